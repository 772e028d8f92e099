//! Comparing runs: the same workload in several languages, or one program under several
//! allocators, side by side on the same axes. Each run is reduced to its summary and a few
//! series; numbers are divided by the workload's `work_units` when every run reports it.
//!
//! A trace directory may hold, in its [`LIGHT_DIR`] subdirectory, a second recording of the
//! same command made with `alloctrace record --events gc,rss` (what `cargo xtask suite` does).
//! Tracing every allocation slows each runtime by its own factor; that recording only sees GC
//! cycles, pauses and resident memory, at a few percent of cost, so the dashboard takes
//! duration, GC and resident figures from it and marks those it had to take from the full
//! trace.
//!
//! ```no_run
//! use analysis::{compare, render, report::Options};
//! let dirs = ["traces/rust", "traces/go", "traces/python"];
//! let dashboard = compare::build(&dirs, &Options::default()).unwrap();
//! std::fs::write("dashboard.html", render::html::dashboard_html(&dashboard).unwrap()).unwrap();
//! ```

use std::path::Path;

use trace_format::schema;

use serde::Serialize;

use crate::{
    error::AnalysisError,
    report::{self, Options},
    summary::Summary,
    util::Log2Hist,
};

/// The subdirectory of a trace that holds its cheap `--events gc,rss` recording (the same name
/// in `xtask/src/figures.rs`, which reads the suite's summaries without this crate).
pub const LIGHT_DIR: &str = "gc-rss";

/// The figures of a run's cheap `--events gc,rss` recording.
#[derive(Clone, Debug, Serialize)]
pub struct Light {
    /// Its summary: duration, GC cycles, pauses, GC CPU share, resident peak.
    pub summary: Summary,
    /// Seconds since its start, one per timeline bucket.
    pub t_s: Vec<f64>,
    /// Resident set size at each bucket's end (zeros without rss rows).
    pub resident: Vec<u64>,
}

/// One run of the dashboard.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub label: String,
    pub summary: Summary,
    /// Seconds since the run's start, one per timeline bucket.
    pub t_s: Vec<f64>,
    /// Width of a timeline bucket, seconds.
    pub bucket_s: f64,
    /// Allocations in each bucket: the dashboard's progress axis sums them.
    pub alloc_count: Vec<u64>,
    pub live_bytes: Vec<u64>,
    /// Resident heap when the run has rss samples, else mapped (`summary.footprint_source`).
    pub footprint: Vec<u64>,
    /// Mapped (virtual) heap footprint.
    pub mapped_footprint: Vec<u64>,
    /// Resident set size (zeros without rss samples).
    pub resident: Vec<u64>,
    /// Allocations per second in each bucket.
    pub alloc_rate: Vec<f64>,
    /// Request sizes (log2 buckets, counts).
    pub sizes: Vec<u64>,
    /// Lifetimes in ns (log2 buckets, counts).
    pub lifetimes: Vec<u64>,
    /// (seconds, external fragmentation index, free gap bytes) per occupancy sample.
    pub fragmentation: Vec<(f64, f64, u64)>,
    /// The cheap recording in the trace's [`LIGHT_DIR`], when there is one.
    pub light: Option<Light>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    pub runs: Vec<Run>,
    /// Every run reports `work_units`, so per-unit numbers are comparable.
    pub per_work_unit: bool,
}

fn digest(report: &report::Report) -> Run {
    let t = &report.timeline;
    let width_s = t.axis.map_or(1.0, |a| a.width_ns as f64 / 1e9).max(1e-9);
    let trim = |h: &Log2Hist| h.counts[..h.used_len()].to_vec();
    Run {
        label: report.trace.label.clone(),
        summary: crate::summary::Summary::from_report(report),
        t_s: (0..t.live_bytes.len())
            .map(|b| b as f64 * width_s)
            .collect(),
        bucket_s: width_s,
        alloc_count: t.alloc_count.clone(),
        live_bytes: t.live_bytes.clone(),
        footprint: t.footprint.clone(),
        mapped_footprint: t.mapped_footprint.clone(),
        resident: t.resident.clone(),
        alloc_rate: t.alloc_count.iter().map(|&c| c as f64 / width_s).collect(),
        sizes: trim(&report.sizes.histogram),
        lifetimes: trim(&report.lifetimes.wall_ns),
        fragmentation: report
            .occupancy
            .samples
            .iter()
            .map(|s| (s.t_ns as f64 / 1e9, s.frag_index, s.free_bytes))
            .collect(),
        light: None,
    }
}

/// The cheap recording of the trace in `dir`, if it has one.
fn light(dir: &Path, options: &Options) -> Result<Option<Light>, AnalysisError> {
    let light_dir = dir.join(LIGHT_DIR);
    if !light_dir.join(schema::RUN_JSON).is_file() {
        return Ok(None);
    }
    let report = report::build(&light_dir, options)?;
    let t = &report.timeline;
    let width_s = t.axis.map_or(1.0, |a| a.width_ns as f64 / 1e9).max(1e-9);
    Ok(Some(Light {
        summary: Summary::from_report(&report),
        t_s: (1..=t.resident.len()).map(|b| b as f64 * width_s).collect(),
        resident: t.resident.clone(),
    }))
}

/// `TRACE:PID` → (TRACE, PID): one process of a trace holding a process tree. A directory
/// whose own name ends in `:digits` is taken as it is.
pub fn split_pid(arg: &Path) -> (std::path::PathBuf, Option<u32>) {
    if arg.is_dir() {
        return (arg.to_owned(), None);
    }
    let text = arg.to_string_lossy();
    match text.rsplit_once(':') {
        Some((dir, pid)) if !dir.is_empty() => match pid.parse::<u32>() {
            Ok(pid) => (std::path::PathBuf::from(dir), Some(pid)),
            Err(_) => (arg.to_owned(), None),
        },
        _ => (arg.to_owned(), None),
    }
}

/// Builds the report of every trace (one at a time, so memory is that of the largest) and
/// keeps what the dashboard shows.
pub fn build<P: AsRef<Path>>(dirs: &[P], options: &Options) -> Result<Dashboard, AnalysisError> {
    if dirs.is_empty() {
        return Err(AnalysisError::NothingToCompare);
    }
    let mut runs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let (dir, pid) = split_pid(dir.as_ref());
        let mut run = digest(&report::build(
            &dir,
            &Options {
                pid: pid.or(options.pid),
                ..options.clone()
            },
        )?);
        if let Some(pid) = pid {
            run.label = format!("{} (pid {pid})", run.label);
            run.summary.label = run.label.clone();
        }
        run.light = light(&dir, options)?;
        runs.push(run);
    }
    // Two runs with the same label (same program twice) are told apart by directory name.
    let labels: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    for (i, run) in runs.iter_mut().enumerate() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1 {
            let dir = Path::new(&run.summary.trace_dir)
                .file_name()
                .map_or_else(|| i.to_string(), |n| n.to_string_lossy().into_owned());
            run.label = format!("{} ({dir})", run.label);
            run.summary.label = run.label.clone();
        }
    }
    let per_work_unit = runs.iter().all(|r| r.summary.work_units.is_some());
    Ok(Dashboard {
        runs,
        per_work_unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that `TRACE:PID` names one process of a trace, and that anything else (a plain
    /// path, a non-numeric suffix, an existing directory whose name has a colon) is a trace.
    #[test]
    fn trace_colon_pid() {
        assert_eq!(
            split_pid(Path::new("runs/tree:1234")),
            ("runs/tree".into(), Some(1234))
        );
        assert_eq!(
            split_pid(Path::new("runs/tree")),
            ("runs/tree".into(), None)
        );
        assert_eq!(split_pid(Path::new("a:b")), ("a:b".into(), None));
        let dir = std::env::temp_dir().join(format!("alloctrace-compare:{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(split_pid(&dir), (dir.clone(), None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
