//! The traced processes (`processes.parquet`) joined with what each one allocated: the
//! report's per-process breakdown.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! for p in &report.processes {
//!     println!("{} {:?}: {} allocations", p.pid, p.exe, p.allocs);
//! }
//! ```

use std::{fs::File, path::Path};

use rustc_hash::FxHashMap;

use arrow::{
    array::{Array, AsArray, PrimitiveArray, RecordBatch},
    datatypes::{ArrowPrimitiveType, Int32Type, UInt32Type, UInt64Type},
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use trace_format::schema::{self, process_col};

use crate::error::AnalysisError;

/// One process of the trace: its `processes.parquet` row (when the trace has one) and its
/// allocation totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessSummary {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub runtime: Option<String>,
    /// Rows of `events` (from the recorder's count).
    pub events: Option<u64>,
    /// Blocks made (allocations and reallocs) and their bytes, blocks ended, and bytes still
    /// live at the end (from the replay).
    pub allocs: u64,
    pub alloc_bytes: u64,
    pub frees: u64,
    pub live_bytes: u64,
}

/// The rows of `processes.parquet`, or none when the trace has no such file (traces recorded
/// before it existed).
pub fn read(dir: &Path) -> Result<Vec<ProcessSummary>, AnalysisError> {
    let path = dir.join(schema::PROCESSES_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let parquet = |source| AnalysisError::Parquet {
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(|source| AnalysisError::Io {
        path: path.clone(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet)?
        .build()
        .map_err(parquet)?;
    let missing = |column| AnalysisError::MissingColumn {
        path: path.clone(),
        column,
    };
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet(e.into()))?;
        let strings = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| missing(name))
        };
        let pid = primitive::<UInt32Type>(&batch, process_col::PID, &missing)?;
        let ppid = primitive::<UInt32Type>(&batch, process_col::PPID, &missing)?;
        let start = primitive::<UInt64Type>(&batch, process_col::START_NS, &missing)?;
        let end = primitive::<UInt64Type>(&batch, process_col::END_NS, &missing)?;
        let events = primitive::<UInt64Type>(&batch, process_col::EVENTS, &missing)?;
        let code = primitive::<Int32Type>(&batch, process_col::EXIT_CODE, &missing)?;
        let signal = primitive::<Int32Type>(&batch, process_col::EXIT_SIGNAL, &missing)?;
        let (exe, runtime) = (strings(process_col::EXE)?, strings(process_col::RUNTIME)?);
        let argv = batch
            .column_by_name(process_col::ARGV)
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| missing(process_col::ARGV))?;
        for i in 0..batch.num_rows() {
            let args = argv.value(i);
            let args = args.as_string::<i32>();
            out.push(ProcessSummary {
                pid: pid.value(i),
                ppid: opt(ppid.is_valid(i), ppid.value(i)),
                start_ns: Some(start.value(i)),
                end_ns: opt(end.is_valid(i), end.value(i)),
                exe: opt(exe.is_valid(i), exe.value(i).to_owned()),
                argv: (0..args.len()).map(|j| args.value(j).to_owned()).collect(),
                exit_code: opt(code.is_valid(i), code.value(i)),
                exit_signal: opt(signal.is_valid(i), signal.value(i)),
                runtime: Some(runtime.value(i).to_owned()),
                events: Some(events.value(i)),
                ..ProcessSummary::default()
            });
        }
    }
    Ok(out)
}

/// Column `name` of `batch` as an array of `T`; `missing` makes the error when it is absent or
/// of another type.
fn primitive<'b, T: ArrowPrimitiveType>(
    batch: &'b RecordBatch,
    name: &'static str,
    missing: &impl Fn(&'static str) -> AnalysisError,
) -> Result<&'b PrimitiveArray<T>, AnalysisError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or_else(|| missing(name))
}

fn opt<T>(valid: bool, value: T) -> Option<T> {
    valid.then_some(value)
}

/// What one process allocated over all its threads (from the replay).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessTotals {
    pub pid: u32,
    /// The process's `start_ns` when its pid was used by more than one process of the trace
    /// (see [`Instances`]); `None` otherwise.
    pub start_ns: Option<u64>,
    pub allocs: u64,
    pub alloc_bytes: u64,
    pub frees: u64,
    pub live_bytes: u64,
}

/// Tells apart the processes of a pid the kernel reused during the recording: rows carry only
/// a pid, so a row belongs to the process of that pid that had started by the row's time.
#[derive(Clone, Debug, Default)]
pub struct Instances {
    /// Start times, ascending, of each pid that more than one process used.
    reused: FxHashMap<u32, Vec<u64>>,
}

impl Instances {
    pub fn new(processes: &[ProcessSummary]) -> Self {
        let mut starts: FxHashMap<u32, Vec<u64>> = FxHashMap::default();
        for p in processes {
            if let Some(start) = p.start_ns {
                starts.entry(p.pid).or_default().push(start);
            }
        }
        starts.retain(|_, s| s.len() > 1);
        for s in starts.values_mut() {
            s.sort_unstable();
        }
        Instances { reused: starts }
    }

    /// The start of the process of `pid` that a row at `ts` belongs to, when `pid` was reused;
    /// `None` for a pid that only one process had.
    #[inline]
    pub fn start_of(&self, pid: u32, ts: u64) -> Option<u64> {
        if self.reused.is_empty() {
            return None;
        }
        let starts = self.reused.get(&pid)?;
        // A row before the first start (a clock edge) goes to the first process.
        let i = starts.partition_point(|&s| s <= ts).saturating_sub(1);
        Some(starts[i])
    }
}

/// Joins allocation totals with the process rows: by pid, and for a pid the kernel reused
/// during the recording by pid and start time. Totals of a process missing from the table
/// (traces recorded before it existed) get a row of their own.
pub fn join(mut rows: Vec<ProcessSummary>, totals: &[ProcessTotals]) -> Vec<ProcessSummary> {
    for t in totals {
        let found = rows
            .iter()
            .rposition(|r| r.pid == t.pid && (t.start_ns.is_none() || r.start_ns == t.start_ns));
        let row = match found {
            Some(i) => &mut rows[i],
            None => {
                rows.push(ProcessSummary {
                    pid: t.pid,
                    start_ns: t.start_ns,
                    ..ProcessSummary::default()
                });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        row.allocs = t.allocs;
        row.alloc_bytes = t.alloc_bytes;
        row.frees = t.frees;
        row.live_bytes = t.live_bytes;
    }
    rows
}
