//! Building a report: opens a trace, streams every batch once through the replay and every
//! reducer of [`crate::reports`], and collects their sections.
//!
//! Memory depends on the number of live blocks and mapped regions, and on the options (buckets,
//! list lengths), never on the number of events.
//!
//! ```no_run
//! use analysis::{render, report};
//! let report = report::build("trace".as_ref(), &report::Options::default()).unwrap();
//! std::fs::write("report.html", render::html::report_html(&report).unwrap()).unwrap();
//! analysis::summary::Summary::from_report(&report).write_json("summary.json".as_ref()).unwrap();
//! print!("{}", render::text::summary(&report));
//! ```

use std::path::Path;

use serde::Serialize;
use trace_format::run::RunInfo;

use crate::{
    error::AnalysisError,
    load::Trace,
    pass,
    processes::{self, ProcessSummary},
    replay::{Counters, Pending, Replay, Totals},
    reports::{
        Axis, Chunk, End, EvKind, Reducer, Via,
        callsites::{CallSites, CallSitesReducer},
        gc::{Gc, GcReducer},
        internal::{Internal, InternalReducer},
        leaks::{Leaks, LeaksReducer},
        lifetimes::{Lifetimes, LifetimesReducer},
        occupancy::{Occupancy, OccupancyReducer},
        peak::{Peak, PeakReducer},
        reallocs::{Reallocs, ReallocsReducer},
        sizes::{Sizes, SizesReducer},
        threads::{Threads, ThreadsReducer},
        timeline::{Timeline, TimelineReducer},
    },
};

/// Knobs of a report. The defaults suit traces of any length.
#[derive(Clone, Debug)]
pub struct Options {
    /// Time buckets of the timeline.
    pub buckets: usize,
    /// Most occupancy samples (each scans the live blocks).
    pub frag_samples: usize,
    /// Length of the top-N lists (sizes, classes, sites, threads, chains).
    pub top: usize,
    /// Largest leaked blocks listed.
    pub max_leaks: usize,
    /// Lifetime under which a freed allocation counts as short-lived.
    pub short_lived_ns: u64,
    /// GC cycles and pauses kept for the timeline overlay (the longest).
    pub gc_overlay: usize,
    /// Report on this process only (its rows; the trace may hold a whole process tree).
    pub pid: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buckets: 600,
            frag_samples: 120,
            top: 25,
            max_leaks: 100,
            short_lived_ns: 1_000_000,
            gc_overlay: 400,
            pid: None,
        }
    }
}

/// What was traced, from `run.json` and the rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TraceInfo {
    pub dir: String,
    /// Name of the run in dashboards (see [`label`]).
    pub label: String,
    pub command: Vec<String>,
    pub exe: String,
    pub mode: String,
    pub status: String,
    pub pids: Vec<u32>,
    /// Runtimes whose allocations appear in the trace.
    pub runtimes: Vec<String>,
    pub rows: u64,
    /// Rows the tracer knows it lost (run.json `lost_total`).
    pub lost_total: u64,
    pub segments: usize,
    /// CLOCK_MONOTONIC of the first row and the span to the last.
    pub start_ns: u64,
    pub duration_ns: u64,
    /// CLOCK_REALTIME of the first row, when run.json has the clock pair.
    pub realtime_start_ns: Option<u64>,
    /// `workload.work_units` from run.json, when the program reported it.
    pub work_units: Option<f64>,
    pub workload: Option<serde_json::Value>,
    pub warnings: Vec<String>,
    /// The event categories recorded (run.json `events`; empty for traces from before
    /// `record --events`).
    pub events: Vec<String>,
    /// Whether footprint figures are resident memory (the trace has `rss` samples); otherwise
    /// they are mapped address space, the only footprint the trace can show.
    pub footprint_resident: bool,
    /// The resident-memory sampling period (run.json `rss.interval_ns`).
    pub rss_interval_ns: Option<u64>,
}

/// Every section of a report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub trace: TraceInfo,
    pub counters: Counters,
    /// Totals after the last row.
    pub end: Totals,
    pub timeline: Timeline,
    pub occupancy: Occupancy,
    pub internal: Internal,
    pub sizes: Sizes,
    pub lifetimes: Lifetimes,
    pub leaks: Leaks,
    pub reallocs: Reallocs,
    pub threads: Threads,
    pub callsites: CallSites,
    pub peak: Peak,
    pub gc: Gc,
    /// Every process of the trace (or the one of `Options::pid`) with its totals.
    pub processes: Vec<ProcessSummary>,
}

/// The name of a run: the workload's own `label`/`variant`/`allocator` when it printed one,
/// else the runtimes and program name, else the directory name.
pub fn label(run: &RunInfo, runtimes: &[String], dir: &Path) -> String {
    let workload_text = |key: &str| {
        run.workload
            .as_ref()
            .and_then(|w| w.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    if let Some(label) = workload_text("label") {
        return label;
    }
    let program = run
        .command
        .first()
        .map(String::as_str)
        .or((!run.exe.is_empty()).then_some(run.exe.as_str()))
        .and_then(|p| Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let mut parts: Vec<String> = Vec::new();
    if !runtimes.is_empty() {
        parts.push(runtimes.join("+"));
    }
    parts.extend(program);
    parts.extend(workload_text("variant").or_else(|| workload_text("allocator")));
    if parts.is_empty() {
        dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    } else {
        parts.join(" · ")
    }
}

/// Calls `$method($args)` on every reducer of a [`Reducers`], the one list of them.
macro_rules! each_reducer {
    ($reducers:ident . $method:ident ( $($arg:expr),* )) => {{
        $reducers.timeline.$method($($arg),*);
        $reducers.occupancy.$method($($arg),*);
        $reducers.internal.$method($($arg),*);
        $reducers.sizes.$method($($arg),*);
        $reducers.lifetimes.$method($($arg),*);
        $reducers.leaks.$method($($arg),*);
        $reducers.reallocs.$method($($arg),*);
        $reducers.threads.$method($($arg),*);
        $reducers.callsites.$method($($arg),*);
        $reducers.peak.$method($($arg),*);
        $reducers.gc.$method($($arg),*);
    }};
}

/// All reducers, fed the same chunks.
struct Reducers {
    alloc_index: Vec<u32>,
    free_index: Vec<u32>,
    realloc_index: Vec<u32>,
    timeline: TimelineReducer,
    occupancy: OccupancyReducer,
    internal: InternalReducer,
    sizes: SizesReducer,
    lifetimes: LifetimesReducer,
    leaks: LeaksReducer,
    reallocs: ReallocsReducer,
    threads: ThreadsReducer,
    callsites: CallSitesReducer,
    peak: PeakReducer,
    gc: GcReducer,
}

impl Reducers {
    fn new(axis: Axis, o: &Options, instances: processes::Instances) -> Self {
        Reducers {
            alloc_index: Vec::new(),
            free_index: Vec::new(),
            realloc_index: Vec::new(),
            timeline: TimelineReducer::new(axis),
            occupancy: OccupancyReducer::new(axis, o.frag_samples),
            internal: InternalReducer::new(axis, o.top),
            sizes: SizesReducer::new(o.top),
            lifetimes: LifetimesReducer::new(o.short_lived_ns),
            leaks: LeaksReducer::new(o.max_leaks, o.top),
            reallocs: ReallocsReducer::new(o.top),
            threads: ThreadsReducer::new(o.top.max(64), instances),
            callsites: CallSitesReducer::new(o.top),
            peak: PeakReducer::new(o.top),
            gc: GcReducer::new(o.gc_overlay),
        }
    }
}

impl pass::Consumer for Reducers {
    fn chunk(&mut self, bucket: usize, pending: &Pending) {
        // Split indices by kind without branching: write to every list, advance the ones the
        // event belongs to. Allocs and frees alternate unpredictably; looping over each kind
        // apart spares every reducer a mispredicted branch per event.
        let n = pending.evs.len();
        self.alloc_index.resize(n, 0);
        self.free_index.resize(n, 0);
        self.realloc_index.resize(n, 0);
        let (mut allocs, mut frees, mut reallocs) = (0, 0, 0);
        for (i, ev) in pending.evs.iter().enumerate() {
            let is_alloc = usize::from(ev.kind == EvKind::Alloc);
            self.alloc_index[allocs] = i as u32;
            self.free_index[frees] = i as u32;
            self.realloc_index[reallocs] = i as u32;
            allocs += is_alloc;
            frees += 1 - is_alloc;
            reallocs += is_alloc & usize::from(ev.via == Via::Realloc);
        }
        // One loop per kind for all reducers: each event is read once, not once per reducer
        // (4% of the report).
        let evs = &pending.evs;
        for &i in &self.alloc_index[..allocs] {
            let ev = &evs[i as usize];
            each_reducer!(self.alloc(bucket, ev));
        }
        for &i in &self.free_index[..frees] {
            let ev = &evs[i as usize];
            each_reducer!(self.free(bucket, ev));
        }
        let chunk = Chunk {
            bucket,
            evs,
            marks: &pending.marks,
            realloc_index: &self.realloc_index[..reallocs],
        };
        each_reducer!(self.observe(&chunk));
    }

    fn bucket_end(&mut self, bucket: usize, replay: &Replay) {
        let state = replay.state();
        each_reducer!(self.bucket_end(bucket, state));
    }
}

/// Whether run.json says the trace samples resident memory (`rss` rows).
pub fn samples_resident(run: &trace_format::run::RunInfo) -> bool {
    run.events
        .iter()
        .any(|e| e == trace_format::run::category::RSS)
}

/// Reads the trace in `dir` and builds every section.
pub fn build(dir: &Path, options: &Options) -> Result<Report, AnalysisError> {
    let mut trace = Trace::open(dir)?;
    trace.only_pid = options.pid;
    let (start, end) = trace.span()?;
    let axis = Axis::new(start, end, options.buckets);
    let mut replay = Replay::new(trace.run.pids.first().copied(), trace.run.start_brk)
        .with_resident_footprint(samples_resident(&trace.run));
    let process_rows = processes::read(dir)?;
    let mut reducers = Reducers::new(axis, options, processes::Instances::new(&process_rows));
    let names = pass::run(&trace, axis, &mut replay, &mut reducers)?;
    let r = reducers;
    let peak_stacks = r.peak.stacks_at_peak();
    let end_ctx = End {
        state: replay.state(),
        axis,
        funcs: &names.funcs,
        reasons: &names.reasons,
        peak_stacks: &peak_stacks,
    };
    let runtimes: Vec<String> = replay
        .runtimes()
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    let run = &trace.run;
    let clock_offset = run.clock.wall_ns(start);
    let info = TraceInfo {
        dir: dir.display().to_string(),
        label: label(run, &runtimes, dir),
        command: run.command.clone(),
        exe: run.exe.clone(),
        mode: run.mode.clone(),
        status: serde_json::to_value(run.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        pids: replay.pids(),
        runtimes,
        rows: replay.counters().rows,
        lost_total: run.lost_total,
        segments: trace.segments.len(),
        start_ns: start,
        duration_ns: end - start,
        realtime_start_ns: clock_offset,
        work_units: run
            .workload
            .as_ref()
            .and_then(|w| w.get("work_units"))
            .and_then(serde_json::Value::as_f64)
            .filter(|u| *u > 0.0),
        workload: run.workload.clone(),
        warnings: run.warnings.clone(),
        events: run.events.clone(),
        footprint_resident: replay.totals().resident_footprint,
        rss_interval_ns: run.rss.as_ref().map(|r| r.interval_ns),
    };
    let threads = r.threads.finish(&end_ctx);
    let mut processes = processes::join(process_rows, &threads.per_process);
    if let Some(pid) = options.pid {
        processes.retain(|p| p.pid == pid);
        if processes
            .iter()
            .all(|p| p.allocs == 0 && p.events.unwrap_or(0) == 0)
        {
            return Err(AnalysisError::NoSuchProcess {
                dir: dir.to_owned(),
                pid,
            });
        }
    }
    let mut callsites = r.callsites.finish(&end_ctx);
    // Name the call sites when the trace has been symbolized (frames.parquet). A damaged
    // frames file leaves them as ids, with a note on the page, rather than failing the report.
    if callsites.available {
        match crate::symbolize::StackFrames::load(dir) {
            Ok(Some(frames)) => callsites.symbolize(&frames),
            Ok(None) => {}
            Err(err) => {
                callsites.note = Some(format!("frames.parquet could not be read: {err}"));
            }
        }
    }
    Ok(Report {
        trace: info,
        counters: replay.counters().clone(),
        end: *replay.totals(),
        timeline: r.timeline.finish(&end_ctx),
        occupancy: r.occupancy.finish(&end_ctx),
        internal: r.internal.finish(&end_ctx),
        sizes: r.sizes.finish(&end_ctx),
        lifetimes: r.lifetimes.finish(&end_ctx),
        leaks: r.leaks.finish(&end_ctx),
        reallocs: r.reallocs.finish(&end_ctx),
        threads,
        processes,
        callsites,
        peak: r.peak.finish(&end_ctx),
        gc: r.gc.finish(&end_ctx),
    })
}
