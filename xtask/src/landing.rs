//! The suite's landing page, `index.html`: one sortable table of every scenario × run with its
//! headline figures, each run linking to its report and its scenario's dashboard.
//!
//! The table is written as plain HTML (readable without JavaScript); a small inline script adds
//! sorting and a scenario filter, then checks the page the way the report pages check
//! themselves: the verdict goes to `#alloctrace-status` (`data-state`, `data-rows`), which the
//! headless-browser test reads. Self-contained: no network, no chart library.

use std::{fmt::Write as _, path::Path};

use crate::figures::{Figure, Headline, LIGHT_DIR};

/// One run of the suite that produced a trace.
pub struct Row<'a> {
    pub scenario: &'a str,
    pub id: &'a str,
    /// The trace directory, relative to the page.
    pub rel_dir: String,
    pub headline: Option<Headline>,
}

/// What a column shows: its header, its explanation, and per row the sort value and the text.
struct Column {
    header: &'static str,
    meaning: &'static str,
    cell: fn(&Headline) -> Option<(f64, String, bool)>,
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

fn figure(f: Figure, fmt: fn(f64) -> String) -> Option<(f64, String, bool)> {
    f.value.map(|v| (v, fmt(v), f.traced))
}

const COLUMNS: &[Column] = &[
    Column {
        header: "peak resident",
        meaning: "The highest resident memory (RSS: pages the kernel actually gave the process) \
                  sampled during the run.",
        cell: |h| figure(h.peak_resident, mib),
    },
    Column {
        header: "footprint / live",
        meaning: "Heap footprint ÷ live bytes at the moment live bytes peaked (1.0× = no \
                  overhead): what the allocator holds per byte the program uses. From the full \
                  trace, which alone knows the live bytes; resident footprint when the trace \
                  sampled it, else mapped (marked).",
        cell: |h| {
            h.footprint_over_live.map(|v| {
                let text = if h.footprint_resident {
                    format!("{v:.2}×")
                } else {
                    format!("{v:.2}× (mapped)")
                };
                (v, text, false)
            })
        },
    },
    Column {
        header: "allocs / unit",
        meaning: "Allocations per work unit (the workload's own count of the work it did, the \
                  same in every language).",
        cell: |h| h.allocs_per_unit.map(|v| (v, format!("{v:.2}"), false)),
    },
    Column {
        header: "bytes / unit",
        meaning: "Bytes requested per work unit.",
        cell: |h| h.bytes_per_unit.map(|v| (v, format!("{v:.0}"), false)),
    },
    Column {
        header: "peak live",
        meaning: "The most bytes in live blocks at once (Go: the runtime's marked heap plus what \
                  was allocated since), from the full trace.",
        cell: |h| h.peak_live.map(|v| (v, mib(v), false)),
    },
    Column {
        header: "GC CPU share",
        meaning: "Share of the CPU spent collecting garbage. Go: the runtime's own accounting, \
                  GC CPU time ÷ (elapsed × GOMAXPROCS), gctrace's N%. Python: collection time \
                  ÷ duration. Empty for runtimes without a GC.",
        cell: |h| figure(h.gc_cpu_share, |v| format!("{:.1}%", 100.0 * v)),
    },
    Column {
        header: "GC cycles",
        meaning: "Garbage-collection cycles (Go) or collections (CPython).",
        cell: |h| figure(h.gc_cycles, |v| format!("{v:.0}")),
    },
    Column {
        header: "duration",
        meaning: "Wall time of the run.",
        cell: |h| figure(h.duration_ns, |v| format!("{:.2} s", v / 1e9)),
    },
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = r#"
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --panel: #f6f8fa; --accent: #0969da; --bad: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: var(--fg); }
main { max-width: 1400px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p.meta { color: var(--muted); margin: 4px 0 12px; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: var(--panel); font-weight: 600; position: sticky; top: 0; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; } th[aria-sort="descending"]::after { content: " ▼"; }
td.text, th.text { text-align: left; }
td.traced { color: #9a6700; }
tr.first td { border-top: 2px solid var(--line); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dt { font-weight: 600; } dd { margin: 0; color: var(--muted); }
#alloctrace-status { position: fixed; right: 8px; bottom: 8px; font: 11px ui-monospace, monospace; padding: 2px 6px;
  border-radius: 4px; background: var(--panel); color: var(--muted); border: 1px solid var(--line); }
#alloctrace-status[data-state="fail"] { color: #fff; background: var(--bad); }
"#;

/// Sorting, the scenario filter and the page's self-check: every expected row is there with
/// its report link, and sorting by each numeric column orders the rows.
const SCRIPT: &str = r#"
(function () {
  'use strict';
  var status = document.getElementById('alloctrace-status');
  var errors = [];
  window.addEventListener('error', function (e) { errors.push('error: ' + (e.message || e)); });
  var table = document.getElementById('runs');
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var original = Array.prototype.slice.call(body.rows);
  function key(row, col, numeric) {
    var cell = row.cells[col];
    if (!numeric) return cell.textContent;
    var v = cell.getAttribute('data-v');
    return v === null ? null : Number(v);
  }
  // Rows without a value go last in either direction.
  function sortBy(col, dir) {
    var numeric = heads[col].getAttribute('data-type') === 'number';
    var rows = original.slice();
    rows.sort(function (a, b) {
      var x = key(a, col, numeric), y = key(b, col, numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      return (numeric ? x - y : x.localeCompare(y)) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h, i) { if (i === col) h.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending'); else h.removeAttribute('aria-sort'); });
    table.classList.add('sorted');
    return rows;
  }
  heads.forEach(function (h, col) {
    h.title = h.title || 'click to sort';
    h.addEventListener('click', function () { sortBy(col, h.getAttribute('aria-sort') === 'ascending' ? -1 : 1); });
  });
  var filter = document.getElementById('scenario');
  filter.addEventListener('change', function () {
    original.forEach(function (r) { r.hidden = filter.value !== '' && r.getAttribute('data-scenario') !== filter.value; });
  });

  function check() {
    var problems = errors.slice();
    var expected = Number(table.getAttribute('data-expected'));
    if (original.length !== expected) problems.push(original.length + ' rows, expected ' + expected);
    original.forEach(function (r) { if (!r.querySelector('a[href$="report.html"]')) problems.push('no report link in ' + r.textContent.slice(0, 40)); });
    heads.forEach(function (h, col) {
      if (h.getAttribute('data-type') !== 'number') return;
      var seen = sortBy(col, 1).map(function (r) { return key(r, col, true); }).filter(function (v) { return v !== null; });
      for (var i = 1; i < seen.length; i++) if (seen[i] < seen[i - 1]) { problems.push(h.textContent + ' does not sort'); break; }
    });
    original.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
    var ok = problems.length === 0;
    status.setAttribute('data-state', ok ? 'ok' : 'fail');
    status.setAttribute('data-charts', '0');
    status.setAttribute('data-rows', String(original.length));
    status.textContent = ok ? 'OK: ' + original.length + ' runs' : 'FAIL: ' + problems.join('; ');
    document.title = (ok ? '[ok] ' : '[fail] ') + document.title;
  }
  try { check(); } catch (e) { errors.push('check: ' + e); status.setAttribute('data-state', 'fail'); status.textContent = 'FAIL: ' + errors.join('; '); }
})();
"#;

/// The page. `dashboards` names each scenario's dashboard file (None if it failed);
/// `failures` lists runs or dashboards that failed.
pub fn html(
    rows: &[Row<'_>],
    dashboards: &[(&str, Option<String>)],
    failures: &[String],
) -> String {
    let mut out = String::new();
    let scenarios: Vec<&str> = dashboards.iter().map(|(s, _)| *s).collect();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>alloctrace suite</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <div id=\"alloctrace-status\" data-state=\"pending\">pending</div>\n<main>\n\
         <h1>alloctrace suite</h1>\n\
         <p class=\"meta\">{} runs of {} scenarios, written by <code>cargo xtask suite</code>. \
         Click a column to sort it; each run links to its report, each scenario to its dashboard \
         (every run of the scenario side by side). \
         <a href=\"findings.md\">findings.md</a> has the same figures and more, one table per scenario.</p>\n",
        rows.len(),
        scenarios.len()
    );
    out.push_str("<p>Scenario: <select id=\"scenario\"><option value=\"\">all</option>");
    for s in &scenarios {
        let _ = write!(out, "<option>{}</option>", escape(s));
    }
    out.push_str("</select> · dashboards: ");
    for (i, (s, file)) in dashboards.iter().enumerate() {
        if i > 0 {
            out.push_str(" · ");
        }
        match file {
            Some(f) => {
                let _ = write!(out, "<a href=\"{}\">{}</a>", escape(f), escape(s));
            }
            None => {
                let _ = write!(out, "{} (failed)", escape(s));
            }
        }
    }
    out.push_str("</p>\n");

    let _ = write!(
        out,
        "<table id=\"runs\" data-expected=\"{}\">\n<thead><tr>\
         <th class=\"text\" data-type=\"text\">scenario</th><th class=\"text\" data-type=\"text\">run</th>",
        rows.len()
    );
    for c in COLUMNS {
        let _ = write!(
            out,
            "<th data-type=\"number\" title=\"{}\">{}</th>",
            escape(c.meaning),
            c.header
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let mut previous = "";
    for row in rows {
        let dashboard = dashboards
            .iter()
            .find(|(s, _)| *s == row.scenario)
            .and_then(|(_, f)| f.as_deref());
        let _ = write!(
            out,
            "<tr data-scenario=\"{}\"{}><td class=\"text\">{}",
            escape(row.scenario),
            if row.scenario == previous {
                ""
            } else {
                " class=\"first\""
            },
            escape(row.scenario)
        );
        previous = row.scenario;
        if let Some(d) = dashboard {
            let _ = write!(out, " · <a href=\"{}\">dashboard</a>", escape(d));
        }
        let _ = write!(
            out,
            "</td><td class=\"text\"><a href=\"{}/report.html\">{}</a></td>",
            escape(&row.rel_dir),
            escape(row.id)
        );
        for c in COLUMNS {
            match row.headline.as_ref().and_then(|h| (c.cell)(h)) {
                Some((v, text, traced)) if v.is_finite() => {
                    let _ = write!(
                        out,
                        "<td data-v=\"{v}\"{}>{}{}</td>",
                        if traced {
                            " class=\"traced\" title=\"measured on the fully traced run, which tracing slows\""
                        } else {
                            ""
                        },
                        escape(&text),
                        if traced { " †" } else { "" }
                    );
                }
                _ => out.push_str("<td>–</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");

    let _ = write!(
        out,
        "<h2>What the columns mean</h2>\n<p class=\"meta\">Each run is recorded twice: the full \
         trace (every allocation: patterns, sizes, lifetimes, fragmentation; tracing slows each \
         runtime by its own factor) and a cheap <code>alloctrace record --events gc,rss</code> \
         recording of the same command in <code>&lt;run&gt;/{LIGHT_DIR}/</code> (GC cycles, pauses \
         and resident memory only). Time, GC and resident figures come from the cheap recording; \
         † marks a figure that had to come from the fully traced run. Definitions and sources: \
         docs/metrics.md.</p>\n<dl>\n"
    );
    for c in COLUMNS {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", c.header, escape(c.meaning));
    }
    out.push_str("</dl>\n");
    if !failures.is_empty() {
        out.push_str("<h2>Failed</h2>\n<ul>\n");
        for f in failures {
            let _ = writeln!(out, "<li>{}</li>", escape(f));
        }
        out.push_str("</ul>\n");
    }
    let _ = write!(
        out,
        "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

/// The rows of the page for the runs in `done`, ordered by scenario (in order of first
/// appearance) then run.
pub fn rows<'a>(
    done: &'a [(String, String, std::path::PathBuf)],
    scenarios: &[&'a str],
    out_dir: &Path,
) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    for scenario in scenarios {
        for (_, id, dir) in done.iter().filter(|(s, _, _)| s == scenario) {
            rows.push(Row {
                scenario,
                id,
                rel_dir: dir
                    .strip_prefix(out_dir)
                    .unwrap_or(dir)
                    .display()
                    .to_string(),
                headline: Headline::read(dir),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the page has one row per run, grouped by scenario, each with its report and
    /// dashboard links, sortable values, traced figures marked, names escaped, and the failures.
    #[test]
    fn page_rows_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut done = Vec::new();
        for id in ["rust", "go<1>"] {
            for scenario in ["churn", "cache"] {
                let run = dir.path().join(scenario).join(id);
                std::fs::create_dir_all(run.join(LIGHT_DIR)).unwrap();
                std::fs::write(
                    run.join("summary.json"),
                    r#"{"duration_ns": 9e9, "peak_live_bytes": 1048576, "footprint_over_live_at_peak": 2.5,
                        "per_work_unit": {"allocations": 1.5, "bytes_allocated": 100}}"#,
                )
                .unwrap();
                if id == "rust" {
                    std::fs::write(
                        run.join(LIGHT_DIR).join("summary.json"),
                        r#"{"duration_ns": 1e9, "peak_resident_bytes": 2097152}"#,
                    )
                    .unwrap();
                }
                done.push((scenario.to_owned(), id.to_owned(), run));
            }
        }
        let scenarios = crate::findings::scenarios_in_order(&done);
        assert_eq!(scenarios, ["churn", "cache"]);
        let rows = rows(&done, &scenarios, dir.path());
        let dashboards = vec![
            ("churn", Some("dashboard-churn.html".to_owned())),
            ("cache", None),
        ];
        let page = html(&rows, &dashboards, &["dashboard cache: <boom>".to_owned()]);
        assert!(page.contains("data-expected=\"4\""));
        assert_eq!(page.matches("<tr data-scenario=").count(), 4);
        assert_eq!(page.matches("<tr data-scenario=\"churn\"").count(), 2);
        // Grouped: both churn rows come before the cache rows.
        let last_churn = page.rfind("data-scenario=\"churn\"").unwrap();
        assert!(last_churn < page.find("data-scenario=\"cache\"").unwrap());
        assert!(page.contains("<a href=\"churn/rust/report.html\">rust</a>"));
        assert!(page.contains("<a href=\"cache/go&lt;1&gt;/report.html\">go&lt;1&gt;</a>"));
        assert_eq!(
            page.matches("<a href=\"dashboard-churn.html\">dashboard</a>")
                .count(),
            2
        );
        assert!(page.contains("cache (failed)"));
        assert!(page.contains("<li>dashboard cache: &lt;boom&gt;</li>"));
        // The rust runs have the cheap recording: untraced duration and resident peak.
        assert!(page.contains("<td data-v=\"1000000000\">1.00 s</td>"));
        assert!(page.contains("<td data-v=\"2097152\">2.0 MiB</td>"));
        // The go runs do not: their duration is the traced one, marked.
        assert!(page.contains("9.00 s †</td>"));
        assert!(page.contains("2.50× (mapped)"));
        assert!(!page.contains("http"), "the page must not load anything");
    }
}
