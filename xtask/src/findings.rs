//! The suite's findings: one Markdown table per scenario built from each run's `summary.json`
//! (written by `alloctrace report`), so the figures quoted in `docs/dashboard.md` come from a
//! file anyone can regenerate with `cargo xtask suite`.

use std::{fmt::Write as _, fs, path::Path};

use serde_json::Value;

/// Renders the findings of the runs in `done` (scenario, runnable id, trace directory).
pub fn markdown(done: &[(String, String, std::path::PathBuf)]) -> String {
    let mut out = String::from(
        "# Suite findings\n\n\
         Written by `cargo xtask suite` from each run's `summary.json`. Sizes are the same for \
         every language; \"per unit\" divides by the workload's own work-unit count. \
         Durations are traced wall time (tracing slows every runtime, Go and Python most). \
         Footprint is resident memory (the heap's resident bytes, sampled while recording); a \
         figure marked (mapped) comes from a trace without resident samples and counts mapped \
         address space. The mapped footprint, touched or not, has its own column.\n",
    );
    for scenario in scenarios_in_order(done) {
        let _ = write!(
            out,
            "\n## {scenario}\n\n\
             | run | allocs/unit | bytes/unit | peak live | peak RSS | peak footprint | footprint/live at peak | peak mapped footprint | internal waste | ext. frag. (end) | Go span frag. / retained free (end) | GC cycles | GC+STW share | traced s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        for (_, id, dir) in done.iter().filter(|(s, _, _)| s == scenario) {
            let Some(s) = read_summary(dir) else {
                let _ = writeln!(out, "| {id} | (no summary.json) ||||||||||||");
                continue;
            };
            let _ = writeln!(out, "{}", row(id, &s));
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

fn row(id: &str, s: &Value) -> String {
    let f = |key: &str| s[key].as_f64();
    let unit = |key: &str| s["per_work_unit"][key].as_f64();
    let duration = f("duration_ns").unwrap_or(0.0);
    let gc = f("gc_total_ns").unwrap_or(0.0) + f("stw_total_ns").unwrap_or(0.0);
    let gc_share = if duration > 0.0 && f("gc_cycles").unwrap_or(0.0) > 0.0 {
        format!("{:.1}%", 100.0 * gc / duration)
    } else {
        "–".into()
    };
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
    // Traces without resident samples (older ones, or recorded without `rss`) only know the
    // mapped footprint: say so beside the figure.
    let mapped = if s["footprint_source"].as_str() == Some("resident") {
        ""
    } else {
        " (mapped)"
    };
    format!(
        "| {id} | {} | {} | {} | {} | {}{mapped} | {}{mapped} | {} | {} | {} | {go_frag} | {} | {gc_share} | {:.1} |",
        opt(unit("allocations"), |v| format!("{v:.2}")),
        opt(unit("bytes_allocated"), |v| format!("{v:.0}")),
        opt(f("peak_live_bytes"), mib),
        opt(f("peak_resident_bytes"), mib),
        opt(f("peak_footprint_bytes"), mib),
        opt(f("footprint_over_live_at_peak"), |v| format!("{v:.2}×")),
        opt(f("peak_mapped_footprint_bytes"), mib),
        opt(f("internal_waste_ratio"), |v| format!("{:.1}%", 100.0 * v)),
        opt(f("frag_index_end"), |v| format!("{v:.2}")),
        opt(f("gc_cycles"), |v| format!("{v:.0}")),
        duration / 1e9,
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

    /// Check a row's formatting, including the GC share only for runs with GC cycles and Go's
    /// span fragmentation only for runs with Go's span accounting.
    #[test]
    fn row_format() {
        let s = serde_json::json!({
            "duration_ns": 2e9, "gc_total_ns": 1e8, "stw_total_ns": 1e8, "gc_cycles": 10,
            "peak_live_bytes": 1048576.0, "peak_footprint_bytes": 2097152.0,
            "footprint_over_live_at_peak": 2.0, "internal_waste_ratio": 0.05, "frag_index_end": 0.5,
            "footprint_source": "resident", "peak_resident_bytes": 4194304.0,
            "peak_mapped_footprint_bytes": 52428800.0,
            "per_work_unit": {"allocations": 1.5, "bytes_allocated": 100.0},
            "go_span_frag_bytes_end": 524288.0, "go_heap_inuse_end": 2097152.0,
            "go_retained_free_bytes_end": 3145728.0
        });
        assert_eq!(
            row("go", &s),
            "| go | 1.50 | 100 | 1.0 MiB | 4.0 MiB | 2.0 MiB | 2.00× | 50.0 MiB | 5.0% | 0.50 | 0.5 MiB (25%) / 3.0 MiB | 10 | 10.0% | 2.0 |"
        );
        let native = serde_json::json!({"duration_ns": 1e9, "gc_cycles": 0});
        assert!(row("c", &native).contains("| – | 0 | – | 1.0 |"));
        // Without resident samples, footprint figures say they are mapped.
        let old = serde_json::json!({"footprint_source": "mapped", "peak_footprint_bytes": 1048576.0, "footprint_over_live_at_peak": 3.0});
        assert!(row("old", &old).contains("| 1.0 MiB (mapped) | 3.00× (mapped) |"));
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
        let md = markdown(&done);
        assert_eq!(md.matches("\n## churn").count(), 1);
        assert_eq!(md.matches("\n## cache").count(), 1);
        let churn = &md[md.find("## churn").unwrap()..md.find("## cache").unwrap()];
        assert!(churn.contains("| rust |") && churn.contains("| go |"));
    }
}
