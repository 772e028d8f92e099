//! The suite's findings: one Markdown table per scenario built from each run's `summary.json`
//! (written by `alloctrace report`) and that of its cheap `--events gc,rss` recording, so the
//! figures quoted in `docs/dashboard.md` come from a file anyone can regenerate with
//! `cargo xtask suite`. Time and GC figures come from the cheap recording (see
//! [`crate::figures`]); a figure taken from the fully traced run instead is marked †.

use std::{fmt::Write as _, fs, path::Path};

use serde_json::Value;

use crate::figures::{Figure, Headline, LIGHT_DIR};

/// Renders the findings of the runs in `done` (scenario, runnable id, trace directory).
pub fn markdown(done: &[(String, String, std::path::PathBuf)]) -> String {
    let mut out = format!(
        "# Suite findings\n\n\
         Written by `cargo xtask suite` from each run's two recordings: the full trace (every \
         allocation: sizes, live bytes, footprint, fragmentation) and a cheap \
         `alloctrace record --events gc,rss` recording of the same command in `<run>/{LIGHT_DIR}/` \
         (GC cycles, pauses and resident memory only). **Peak resident, GC CPU share, GC cycles \
         and duration come from the cheap recording**; † marks a figure that had to come from \
         the fully traced run, which tracing slows by its own factor per runtime. Sizes are the \
         same for every language; \"per unit\" divides by the workload's own work-unit count. \
         Footprint is the heap's resident bytes (brk heap and anonymous writable mappings) when \
         the trace sampled resident memory, else its mapped bytes, marked (mapped). \
         Definitions: docs/metrics.md.\n",
    );
    for scenario in scenarios_in_order(done) {
        let _ = write!(
            out,
            "\n## {scenario}\n\n\
             | run | allocs/unit | bytes/unit | peak live | peak resident | peak heap footprint | footprint/live at peak | peak mapped footprint | internal waste | ext. frag. (end) | Go span frag. / retained free (end) | GC cycles | GC CPU share | duration s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        for (_, id, dir) in done.iter().filter(|(s, _, _)| s == scenario) {
            let (Some(s), Some(h)) = (read_summary(dir), Headline::read(dir)) else {
                let _ = writeln!(out, "| {id} | (no summary.json) |||||||||||||");
                continue;
            };
            let _ = writeln!(out, "{}", row(id, &s, &h));
        }
    }
    out
}

/// Each scenario of `done` once, in order of first appearance: runs come language by language,
/// not scenario by scenario, so equal scenarios are not adjacent (`Vec::dedup` would keep
/// repeats, and the suite would build each dashboard several times).
pub fn scenarios_in_order(done: &[(String, String, std::path::PathBuf)]) -> Vec<&str> {
    let mut scenarios: Vec<&str> = Vec::new();
    for (scenario, _, _) in done {
        if !scenarios.contains(&scenario.as_str()) {
            scenarios.push(scenario);
        }
    }
    scenarios
}

fn read_summary(dir: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).ok()?).ok()
}

/// A figure with † when it comes from the fully traced run.
fn marked(f: Figure, fmt: impl Fn(f64) -> String) -> String {
    match f.value {
        Some(v) if f.traced => format!("{} †", fmt(v)),
        Some(v) => fmt(v),
        None => "–".into(),
    }
}

/// One run's row: `s` is the full trace's summary, `h` the headline figures of both recordings.
fn row(id: &str, s: &Value, h: &Headline) -> String {
    let f = |key: &str| s[key].as_f64();
    // Go's counterpart of the external fragmentation index, from the runtime's own span
    // accounting at its last cycle: in-use span bytes not marked live, and free spans kept.
    let go_frag = match (
        f("go_span_frag_bytes_end"),
        f("go_heap_inuse_end"),
        f("go_retained_free_bytes_end"),
    ) {
        (Some(frag), Some(inuse), Some(retained)) if inuse > 0.0 => format!(
            "{} ({:.0}%) / {}",
            mib(frag),
            100.0 * frag / inuse,
            mib(retained)
        ),
        _ => "–".into(),
    };
    let mapped_mark = if h.footprint_resident {
        ""
    } else {
        " (mapped)"
    };
    // Without a GC there is no share to show, wherever it would come from.
    let gc_share = if h.gc_cycles.value.unwrap_or(0.0) > 0.0 {
        marked(h.gc_cpu_share, |v| format!("{:.1}%", 100.0 * v))
    } else {
        "–".into()
    };
    format!(
        "| {id} | {} | {} | {} | {} | {}{} | {}{} | {} | {} | {} | {go_frag} | {} | {gc_share} | {} |",
        opt(h.allocs_per_unit, |v| format!("{v:.2}")),
        opt(h.bytes_per_unit, |v| format!("{v:.0}")),
        opt(h.peak_live, mib),
        marked(h.peak_resident, mib),
        opt(f("peak_footprint_bytes"), mib),
        mapped_mark,
        opt(h.footprint_over_live, |v| format!("{v:.2}×")),
        mapped_mark,
        opt(
            f("peak_mapped_footprint_bytes").filter(|_| h.footprint_resident),
            mib
        ),
        opt(f("internal_waste_ratio"), |v| format!("{:.1}%", 100.0 * v)),
        opt(f("frag_index_end"), |v| format!("{v:.2}")),
        marked(h.gc_cycles, |v| format!("{v:.0}")),
        marked(h.duration_ns, |v| format!("{:.2}", v / 1e9)),
    )
}

fn opt(v: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".into(), fmt)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check a row's formatting: time and GC figures from the cheap recording when there is one
    /// and marked † otherwise, the GC share only for runs with GC cycles, Go's span
    /// fragmentation only for runs with Go's span accounting, and footprint marked (mapped)
    /// when the trace has no resident samples.
    #[test]
    fn row_format() {
        let full = serde_json::json!({
            "duration_ns": 2e9, "gc_cycles": 10, "gc_cpu_share": 0.5,
            "peak_live_bytes": 1048576.0, "peak_footprint_bytes": 2097152.0,
            "footprint_source": "resident", "peak_mapped_footprint_bytes": 8388608.0,
            "footprint_over_live_at_peak": 2.0, "internal_waste_ratio": 0.05, "frag_index_end": 0.5,
            "per_work_unit": {"allocations": 1.5, "bytes_allocated": 100.0},
            "go_span_frag_bytes_end": 524288.0, "go_heap_inuse_end": 2097152.0,
            "go_retained_free_bytes_end": 3145728.0
        });
        let light = serde_json::json!({
            "duration_ns": 5e8, "gc_cycles": 12, "gc_cpu_share": 0.05, "peak_resident_bytes": 4194304.0
        });
        let h = Headline::from_summaries(&full, Some(&light));
        assert_eq!(
            row("go", &full, &h),
            "| go | 1.50 | 100 | 1.0 MiB | 4.0 MiB | 2.0 MiB | 2.00× | 8.0 MiB | 5.0% | 0.50 | 0.5 MiB (25%) / 3.0 MiB | 12 | 5.0% | 0.50 |"
        );
        let h = Headline::from_summaries(&full, None);
        assert!(row("go", &full, &h).ends_with("| 10 † | 50.0% † | 2.00 † |"));
        let native = serde_json::json!({"duration_ns": 1e9, "gc_cycles": 0, "peak_footprint_bytes": 1048576.0, "footprint_over_live_at_peak": 3.0});
        let h = Headline::from_summaries(&native, None);
        let r = row("c", &native, &h);
        assert!(
            r.contains("| 1.0 MiB (mapped) | 3.00× (mapped) | – |"),
            "{r}"
        );
        assert!(r.ends_with("| – | 0 † | – | 1.00 † |"), "{r}");
    }

    /// Check one table per scenario, with each scenario's runs, when runs come language by
    /// language.
    #[test]
    fn one_table_per_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let mut done = Vec::new();
        for id in ["rust", "go"] {
            for scenario in ["churn", "cache"] {
                let run = dir.path().join(format!("{scenario}-{id}"));
                fs::create_dir_all(&run).unwrap();
                fs::write(run.join("summary.json"), r#"{"duration_ns": 1e9}"#).unwrap();
                done.push((scenario.to_owned(), id.to_owned(), run));
            }
        }
        assert_eq!(scenarios_in_order(&done), ["churn", "cache"]);
        let md = markdown(&done);
        assert_eq!(md.matches("\n## churn").count(), 1);
        assert_eq!(md.matches("\n## cache").count(), 1);
        let churn = &md[md.find("## churn").unwrap()..md.find("## cache").unwrap()];
        assert!(churn.contains("| rust |") && churn.contains("| go |"));
    }
}
