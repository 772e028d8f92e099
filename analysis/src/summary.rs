//! `summary.json`: every headline number of a report in one flat, stable object, so scripts and
//! dashboards need not know the report's inner structure. Times are ns since the trace start
//! unless the name says otherwise.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! let summary = analysis::summary::Summary::from_report(&report);
//! summary.write_json("summary.json".as_ref()).unwrap();
//! println!("peak {} bytes", summary.peak_live_bytes);
//! ```

use std::{fs, path::Path};

use serde::{Deserialize, Serialize};

use crate::{error::AnalysisError, load::Runtime, replay::Counters, report::Report};

/// Go's GC CPU source, in summary.json.
pub const GC_CPU_GO: &str = "go runtime's own accounting: GC CPU time / (elapsed x GOMAXPROCS) from process start to its last GC cycle end (gctrace's N%)";
/// Python's GC CPU source, in summary.json.
pub const GC_CPU_PYTHON: &str =
    "python: summed collection time (gc_start to gc_end, wall time) / trace duration";

/// `footprint_source` when footprint is resident memory.
pub const FOOTPRINT_RESIDENT: &str = "resident";
/// `footprint_source` when the trace has no `rss` rows.
pub const FOOTPRINT_MAPPED: &str = "mapped";

/// The GC CPU share and where it comes from: Go's own accounting when the trace has it, else
/// CPython's collections timed by the trace.
fn gc_cpu_share(r: &Report) -> Option<(f64, &'static str)> {
    let by = |runtime| r.gc.runtimes.iter().find(|g| g.runtime == runtime);
    if let Some(go) = by(Runtime::Go)
        && let (Some(gc), Some(capacity)) = (go.gc_cpu_ns, go.cpu_capacity_ns)
        && capacity > 0
    {
        return Some((gc as f64 / capacity as f64, GC_CPU_GO));
    }
    let python = by(Runtime::Python)?;
    (python.cycles > 0 && r.trace.duration_ns > 0).then(|| {
        (
            python.total_ns as f64 / r.trace.duration_ns as f64,
            GC_CPU_PYTHON,
        )
    })
}

/// Headline numbers divided by the workload's `work_units`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PerUnit {
    pub allocations: f64,
    pub bytes_allocated: f64,
    pub peak_live_bytes: f64,
    pub peak_footprint_bytes: f64,
    /// `None` without `rss` rows.
    #[serde(default)]
    pub peak_resident_bytes: Option<f64>,
    pub temporary_allocations: f64,
    pub ns: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub label: String,
    pub trace_dir: String,
    pub command: Vec<String>,
    pub runtimes: Vec<String>,
    pub status: String,
    pub rows: u64,
    pub rows_lost: u64,
    pub duration_ns: u64,

    pub allocations: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub go_allocations: u64,
    pub failed_allocations: u64,
    pub bytes_allocated: u64,
    pub mean_size: f64,
    pub largest_size: u64,

    pub peak_live_bytes: u64,
    pub peak_live_blocks: u64,
    pub peak_live_t_ns: u64,
    /// What the `footprint` figures measure: [`FOOTPRINT_RESIDENT`] (resident bytes of the brk
    /// heap and anonymous writable mappings, from the trace's `rss` samples) or
    /// [`FOOTPRINT_MAPPED`] (mapped bytes of the same, from mmap/brk rows: the trace has no
    /// `rss` rows). The `mapped_footprint` figures are always the mapped ones.
    #[serde(default)]
    pub footprint_source: String,
    pub footprint_at_peak_live: u64,
    pub peak_footprint_bytes: u64,
    pub peak_footprint_t_ns: u64,
    pub live_bytes_end: u64,
    pub live_blocks_end: u64,
    pub footprint_end: u64,
    /// footprint / live at the live peak (1.0 = no overhead); 0 when nothing was live.
    pub footprint_over_live_at_peak: f64,
    /// Highest resident set size of the traced processes and when (ns from the trace start);
    /// `None` without `rss` rows.
    #[serde(default)]
    pub peak_resident_bytes: Option<u64>,
    #[serde(default)]
    pub peak_resident_ns: Option<u64>,
    /// Resident set size at the end (each process's last sample).
    #[serde(default)]
    pub resident_end: Option<u64>,
    /// Mapped (virtual) heap footprint: brk heap plus anonymous writable mappings, whether
    /// touched or not, from mmap/brk rows (0 when syscalls were not recorded).
    #[serde(default)]
    pub mapped_footprint_at_peak_live: u64,
    #[serde(default)]
    pub peak_mapped_footprint_bytes: u64,
    #[serde(default)]
    pub peak_mapped_footprint_t_ns: u64,
    #[serde(default)]
    pub mapped_footprint_end: u64,
    #[serde(default)]
    pub mapped_footprint_over_live_at_peak: f64,

    pub leaked_blocks: u64,
    pub leaked_bytes: u64,

    pub temporary_allocations: u64,
    pub temporary_ratio: f64,
    pub short_lived_allocations: u64,
    pub lifetime_p50_ns: Option<u64>,
    pub lifetime_p99_ns: Option<u64>,

    pub internal_waste_bytes: u64,
    pub internal_waste_ratio: f64,
    pub live_internal_waste_end: u64,

    pub frag_index_end: f64,
    pub free_gap_bytes_end: u64,
    pub largest_gap_end: u64,
    pub gaps_end: u64,
    pub empty_pages_end: u64,
    pub worst_free_gap_bytes: u64,
    pub worst_free_gap_t_ns: u64,

    pub realloc_moved: u64,
    pub realloc_in_place: u64,
    pub realloc_bytes_copied: u64,
    pub longest_realloc_chain: u64,

    pub threads: u64,
    pub cross_thread_frees: u64,
    /// Processes in the report (a trace of a process tree, or the one `--pid` chose).
    pub processes: u64,

    pub gc_cycles: u64,
    pub gc_total_ns: u64,
    pub stw_pauses: u64,
    pub stw_total_ns: u64,
    pub stw_max_ns: u64,
    /// Share of the CPU spent collecting garbage. Go: GC CPU time ÷ (elapsed × GOMAXPROCS) as
    /// the runtime itself counts them from the process's start to its last cycle end, the
    /// figure `GODEBUG=gctrace=1` prints as `N%`. Python: summed collection time (gc_start to
    /// gc_end, wall time) ÷ the trace's duration. `None` without GC cycles (or without the
    /// runtime's accounting: a Go binary without DWARF). See `gc_cpu_share_source`.
    pub gc_cpu_share: Option<f64>,
    pub gc_cpu_share_source: Option<String>,

    /// Go's own span accounting at its last cycle end (`runtime.MemStats` names): bytes in
    /// in-use spans, in free spans, of free spans returned to the OS, in stack spans.
    pub go_heap_inuse_end: Option<u64>,
    pub go_heap_idle_end: Option<u64>,
    pub go_heap_released_end: Option<u64>,
    pub go_stack_inuse_end: Option<u64>,
    /// Span fragmentation: `heap_inuse − heap_live`, bytes of in-use spans not holding marked
    /// objects (free slots in partly used spans, and objects allocated since the mark).
    pub go_span_frag_bytes_end: Option<u64>,
    /// Retained free memory: `heap_idle − heap_released`, free spans the runtime keeps mapped.
    pub go_retained_free_bytes_end: Option<u64>,

    pub work_units: Option<f64>,
    pub per_work_unit: Option<PerUnit>,
    pub counters: Counters,
}

impl Summary {
    pub fn from_report(r: &Report) -> Summary {
        let last = r.occupancy.last.unwrap_or_default();
        let worst = r.occupancy.worst.unwrap_or_default();
        let allocations = r.counters.allocs + r.counters.go_allocs;
        let go = r.gc.runtimes.iter().find(|g| g.runtime == Runtime::Go);
        let go_heap = go.and_then(|g| g.last_heap);
        let resident = r.trace.footprint_resident;
        let over_live = |footprint: u64| {
            if r.peak.live_bytes > 0 {
                footprint as f64 / r.peak.live_bytes as f64
            } else {
                0.0
            }
        };
        let per_work_unit = r.trace.work_units.map(|units| PerUnit {
            allocations: allocations as f64 / units,
            bytes_allocated: r.sizes.bytes as f64 / units,
            peak_live_bytes: r.peak.live_bytes as f64 / units,
            peak_footprint_bytes: r.peak.footprint_peak as f64 / units,
            peak_resident_bytes: resident.then(|| r.peak.resident_peak as f64 / units),
            temporary_allocations: r.lifetimes.temporary.count as f64 / units,
            ns: r.trace.duration_ns as f64 / units,
        });
        Summary {
            label: r.trace.label.clone(),
            trace_dir: r.trace.dir.clone(),
            command: r.trace.command.clone(),
            runtimes: r.trace.runtimes.clone(),
            status: r.trace.status.clone(),
            rows: r.trace.rows,
            rows_lost: r.trace.lost_total,
            duration_ns: r.trace.duration_ns,
            allocations,
            frees: r.counters.frees,
            reallocs: r.counters.reallocs,
            go_allocations: r.counters.go_allocs,
            failed_allocations: r.counters.failed_allocs + r.counters.failed_reallocs,
            bytes_allocated: r.sizes.bytes,
            mean_size: r.sizes.mean,
            largest_size: r.sizes.largest,
            peak_live_bytes: r.peak.live_bytes,
            peak_live_blocks: r.peak.live_blocks,
            peak_live_t_ns: r.peak.t_ns,
            footprint_source: if resident {
                FOOTPRINT_RESIDENT
            } else {
                FOOTPRINT_MAPPED
            }
            .to_owned(),
            footprint_at_peak_live: r.peak.footprint,
            peak_footprint_bytes: r.peak.footprint_peak,
            peak_footprint_t_ns: r.peak.footprint_peak_t_ns,
            live_bytes_end: r.end.live(),
            live_blocks_end: r.end.live_blocks,
            footprint_end: r.end.footprint(),
            footprint_over_live_at_peak: over_live(r.peak.footprint),
            peak_resident_bytes: resident.then_some(r.peak.resident_peak),
            peak_resident_ns: resident.then_some(r.peak.resident_peak_t_ns),
            resident_end: resident.then_some(r.end.resident),
            mapped_footprint_at_peak_live: r.peak.mapped_footprint,
            peak_mapped_footprint_bytes: r.peak.mapped_footprint_peak,
            peak_mapped_footprint_t_ns: r.peak.mapped_footprint_peak_t_ns,
            mapped_footprint_end: r.end.mapped_footprint(),
            mapped_footprint_over_live_at_peak: over_live(r.peak.mapped_footprint),
            leaked_blocks: r.leaks.blocks,
            leaked_bytes: r.leaks.bytes,
            temporary_allocations: r.lifetimes.temporary.count,
            temporary_ratio: r.lifetimes.temporary_ratio,
            short_lived_allocations: r.lifetimes.short_lived.count,
            lifetime_p50_ns: r.lifetimes.p50_ns,
            lifetime_p99_ns: r.lifetimes.p99_ns,
            internal_waste_bytes: r.internal.waste_bytes,
            internal_waste_ratio: r.internal.waste_ratio,
            live_internal_waste_end: r.internal.live_waste_end,
            frag_index_end: last.frag_index,
            free_gap_bytes_end: last.free_bytes,
            largest_gap_end: last.largest_gap,
            gaps_end: last.gaps,
            empty_pages_end: last.empty_pages,
            worst_free_gap_bytes: worst.free_bytes,
            worst_free_gap_t_ns: worst.t_ns,
            realloc_moved: r.reallocs.moved,
            realloc_in_place: r.reallocs.in_place,
            realloc_bytes_copied: r.reallocs.bytes_copied,
            longest_realloc_chain: r
                .reallocs
                .longest
                .first()
                .map_or(0, |c| u64::from(c.reallocs)),
            threads: r.threads.threads,
            processes: (r.processes.len() as u64).max(1),
            cross_thread_frees: r.threads.cross_thread_frees,
            gc_cycles: r.gc.runtimes.iter().map(|g| g.cycles).sum(),
            gc_total_ns: r
                .gc
                .runtimes
                .iter()
                .fold(0u64, |a, g| a.saturating_add(g.total_ns)),
            stw_pauses: r.gc.pauses.count,
            stw_total_ns: r.gc.pauses.total_ns,
            stw_max_ns: r.gc.pauses.max_ns,
            gc_cpu_share: gc_cpu_share(r).map(|(share, _)| share),
            gc_cpu_share_source: gc_cpu_share(r).map(|(_, source)| source.to_owned()),
            go_heap_inuse_end: go_heap.map(|h| h.inuse),
            go_heap_idle_end: go_heap.map(|h| h.idle),
            go_heap_released_end: go_heap.map(|h| h.released),
            go_stack_inuse_end: go_heap.map(|h| h.stacks),
            go_span_frag_bytes_end: go_heap
                .zip(go.and_then(|g| g.last_heap_live))
                .map(|(h, live)| h.inuse.saturating_sub(live)),
            go_retained_free_bytes_end: go_heap.map(|h| h.idle.saturating_sub(h.released)),
            work_units: r.trace.work_units,
            per_work_unit,
            counters: r.counters.clone(),
        }
    }

    /// Writes the summary as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), AnalysisError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| AnalysisError::Write {
            path: path.to_owned(),
            source: e.into(),
        })?;
        fs::write(path, text + "\n").map_err(|source| AnalysisError::Write {
            path: path.to_owned(),
            source,
        })
    }
}
