//! Helpers shared by the integration tests: traces written row by row with the real writer.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use trace_format::{
    names::{Event, Runtime},
    run::{Clock, RunInfo, Status},
    write::{Row, TraceWriter, WriterOptions},
};

pub const PID: u32 = 100;
pub const HEAP: u64 = 0x10000;

/// A native alloc row.
pub fn alloc(ts_ns: u64, addr: u64, size: u64) -> Row<'static> {
    Row {
        ts_ns,
        pid: PID,
        tid: PID,
        event: Event::Alloc,
        func: "malloc",
        addr,
        size,
        ..Row::default()
    }
}

/// A native free row.
pub fn free(ts_ns: u64, addr: u64) -> Row<'static> {
    Row {
        ts_ns,
        pid: PID,
        tid: PID,
        event: Event::Free,
        func: "free",
        addr,
        ..Row::default()
    }
}

/// A realloc row.
pub fn realloc(ts_ns: u64, old_addr: u64, addr: u64, size: u64) -> Row<'static> {
    Row {
        ts_ns,
        pid: PID,
        tid: PID,
        event: Event::Realloc,
        func: "realloc",
        addr,
        size,
        old_addr: Some(old_addr),
        ..Row::default()
    }
}

/// A brk row moving the break to `addr`.
pub fn brk(ts_ns: u64, addr: u64) -> Row<'static> {
    Row {
        ts_ns,
        pid: PID,
        tid: PID,
        event: Event::Brk,
        func: "brk",
        addr,
        old_addr: Some(addr),
        ..Row::default()
    }
}

/// Writes `rows` (in order, in segments of `segment_rows`) and a run.json into `dir`.
pub fn write_trace_with(
    dir: &Path,
    rows: &[Row<'_>],
    segment_rows: usize,
    workload: Option<serde_json::Value>,
) {
    let options = WriterOptions {
        batch_rows: 7,
        ..WriterOptions::default()
    };
    write_trace_opts(dir, rows, segment_rows, workload, options);
}

/// Like [`write_trace_with`], with explicit writer options (row-group size, ...).
pub fn write_trace_opts(
    dir: &Path,
    rows: &[Row<'_>],
    segment_rows: usize,
    workload: Option<serde_json::Value>,
    options: WriterOptions,
) {
    let mut w = TraceWriter::create(dir, options, vec![]).unwrap();
    for (i, row) in rows.iter().enumerate() {
        w.push(row).unwrap();
        if (i + 1) % segment_rows == 0 {
            w.roll().unwrap();
        }
    }
    let segments = w.finish().unwrap();
    let first = rows.first().map_or(0, |r| r.ts_ns);
    let run = RunInfo {
        schema_version: 1,
        mode: "spawn".into(),
        command: vec!["/usr/bin/test-program".into()],
        pids: vec![rows.first().map_or(PID, |r| r.pid)],
        clock: Clock {
            monotonic_start_ns: first,
            realtime_start_ns: 1_700_000_000_000_000_000,
            monotonic_end_ns: 0,
        },
        status: Status::Complete,
        events_written: rows.len() as u64,
        segments,
        start_brk: HEAP,
        workload,
        ..RunInfo::default()
    };
    run.write(dir).unwrap();
}

pub fn write_trace(dir: &Path, rows: &[Row<'_>]) {
    write_trace_with(dir, rows, usize::MAX, None);
}

/// GC rows only, as `record --events gc` writes them: two CPython collections.
pub fn gc_only_rows() -> Vec<Row<'static>> {
    let gc = |ts, event| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event,
        func: "gc_collect_main",
        runtime: Runtime::Python,
        ..Row::default()
    };
    vec![
        gc(1_000, Event::GcStart),
        gc(1_400, Event::GcEnd),
        gc(5_000, Event::GcStart),
        gc(5_100, Event::GcEnd),
        gc(10_000, Event::GcStart),
        gc(10_000, Event::GcEnd),
    ]
}
