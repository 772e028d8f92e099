//! A few lines for the terminal after `alloctrace report`.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! print!("{}", analysis::render::text::summary(&report));
//! ```

use std::fmt::Write as _;

use super::{bytes, duration};
use crate::report::Report;

/// The headline numbers, one topic per line, ending with a newline.
pub fn summary(report: &Report) -> String {
    let s = crate::summary::Summary::from_report(report);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} rows over {} ({} lost), runtimes: {}",
        s.label,
        s.rows,
        duration(s.duration_ns),
        s.rows_lost,
        if s.runtimes.is_empty() {
            "none".to_owned()
        } else {
            s.runtimes.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "allocations: {} ({}), frees: {}, reallocs: {}, failed: {}",
        s.allocations,
        bytes(s.bytes_allocated),
        s.frees,
        s.reallocs,
        s.failed_allocations
    );
    let _ = writeln!(
        out,
        "peak live: {} in {} blocks at {}; peak footprint ({}): {} at {}; peak mapped footprint: {}",
        bytes(s.peak_live_bytes),
        s.peak_live_blocks,
        duration(s.peak_live_t_ns),
        s.footprint_source,
        bytes(s.peak_footprint_bytes),
        duration(s.peak_footprint_t_ns),
        bytes(s.peak_mapped_footprint_bytes),
    );
    if let (Some(peak), Some(t)) = (s.peak_resident_bytes, s.peak_resident_ns) {
        let _ = writeln!(
            out,
            "peak resident (RSS): {} at {}",
            bytes(peak),
            duration(t)
        );
    }
    let _ = writeln!(
        out,
        "fragmentation at end: index {:.2}, {} free in {} gaps (largest {}), {} empty pages; internal waste {:.1}%",
        s.frag_index_end,
        bytes(s.free_gap_bytes_end),
        s.gaps_end,
        bytes(s.largest_gap_end),
        s.empty_pages_end,
        s.internal_waste_ratio * 100.0
    );
    let _ = writeln!(
        out,
        "leaked: {} in {} blocks; temporary: {} ({:.1}%); median lifetime: {}",
        bytes(s.leaked_bytes),
        s.leaked_blocks,
        s.temporary_allocations,
        s.temporary_ratio * 100.0,
        s.lifetime_p50_ns.map_or_else(|| "n/a".to_owned(), duration)
    );
    if report.processes.len() > 1 {
        let _ = writeln!(out, "processes: {}", report.processes.len());
        let mut by_bytes: Vec<_> = report.processes.iter().collect();
        by_bytes.sort_by(|a, b| b.alloc_bytes.cmp(&a.alloc_bytes).then(a.pid.cmp(&b.pid)));
        for p in by_bytes.iter().take(10) {
            let exe = p
                .exe
                .as_deref()
                .map_or("?", |e| e.rsplit('/').next().unwrap_or(e));
            let end = match (p.exit_code, p.exit_signal, p.end_ns) {
                (Some(code), _, _) => format!("exit {code}"),
                (None, Some(sig), _) => format!("signal {sig}"),
                (None, None, Some(_)) => "ended".to_owned(),
                (None, None, None) => "running".to_owned(),
            };
            let _ = writeln!(
                out,
                "  pid {} {exe}: {} allocations ({}), {} frees, {} live at end, {end}",
                p.pid,
                p.allocs,
                bytes(p.alloc_bytes),
                p.frees,
                bytes(p.live_bytes),
            );
        }
        if by_bytes.len() > 10 {
            let _ = writeln!(
                out,
                "  ... {} more in processes.parquet",
                by_bytes.len() - 10
            );
        }
    }
    if s.gc_cycles > 0 || s.stw_pauses > 0 {
        let _ = writeln!(
            out,
            "gc: {} cycles ({}), {} stop-the-world pauses ({}, max {})",
            s.gc_cycles,
            duration(s.gc_total_ns),
            s.stw_pauses,
            duration(s.stw_total_ns),
            duration(s.stw_max_ns)
        );
    }
    if let Some(per) = &s.per_work_unit {
        let _ = writeln!(
            out,
            "per work unit: {:.2} allocations, {} allocated, {} peak live",
            per.allocations,
            bytes(per.bytes_allocated as u64),
            bytes(per.peak_live_bytes as u64)
        );
    }
    out
}
