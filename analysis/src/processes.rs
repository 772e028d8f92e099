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

use arrow::{
    array::{Array, AsArray},
    datatypes::{Int32Type, UInt32Type, UInt64Type},
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
        let u32s = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt32Type>())
                .ok_or_else(|| missing(name))
        };
        let u64s = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| missing(name))
        };
        let i32s = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Int32Type>())
                .ok_or_else(|| missing(name))
        };
        let strings = |name: &'static str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| missing(name))
        };
        let (pid, ppid) = (u32s(process_col::PID)?, u32s(process_col::PPID)?);
        let (start, end) = (u64s(process_col::START_NS)?, u64s(process_col::END_NS)?);
        let events = u64s(process_col::EVENTS)?;
        let (code, signal) = (
            i32s(process_col::EXIT_CODE)?,
            i32s(process_col::EXIT_SIGNAL)?,
        );
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

fn opt<T>(valid: bool, value: T) -> Option<T> {
    valid.then_some(value)
}

/// Joins allocation totals per pid (`(pid, allocs, alloc_bytes, frees, live_bytes)`) with the
/// process rows. A pid the kernel reused during the recording has several rows: its totals go
/// to the last one (the replay keys processes by pid).
pub fn join(
    mut rows: Vec<ProcessSummary>,
    totals: &[(u32, u64, u64, u64, u64)],
) -> Vec<ProcessSummary> {
    for &(pid, allocs, alloc_bytes, frees, live_bytes) in totals {
        let row = match rows.iter().rposition(|r| r.pid == pid) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(ProcessSummary {
                    pid,
                    ..ProcessSummary::default()
                });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        row.allocs = allocs;
        row.alloc_bytes = alloc_bytes;
        row.frees = frees;
        row.live_bytes = live_bytes;
    }
    rows
}
