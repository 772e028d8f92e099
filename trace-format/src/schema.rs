//! The trace's Parquet schema: the one definition every writer and reader uses.
//!
//! A trace directory holds `run.json` (see [`crate::run`]) and `events/part-NNNNNN.parquet`
//! segments, each a complete Parquet file with the [`events_schema`] columns. The column names
//! are a public contract (notebooks and SQL depend on them): add columns, never rename or remove
//! one. Readers ignore columns they do not know. `docs/schema.md` documents every column;
//! `schema_snapshot()` is compared with `trace-format/schema.snapshot.txt` by a test so the two cannot
//! drift silently.
//!
//! ```no_run
//! let schema = trace_format::schema::events_schema();
//! assert_eq!(schema.field(0).name(), trace_format::schema::col::TS_NS);
//! ```

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Bumped when a change could make an older reader misread a trace.
pub const SCHEMA_VERSION: u32 = 1;

/// Parquet key-value metadata keys written into every segment's footer.
pub mod meta {
    pub const SCHEMA_VERSION: &str = "alloctrace.schema_version";
    pub const TOOL_VERSION: &str = "alloctrace.tool_version";
    pub const PID: &str = "alloctrace.pid";
    pub const EXE: &str = "alloctrace.exe";
    pub const ARCH: &str = "alloctrace.arch";
    /// CLOCK_MONOTONIC and CLOCK_REALTIME read back to back at the start: `ts_ns` +
    /// (realtime − monotonic) is wall-clock time.
    pub const MONOTONIC_START_NS: &str = "alloctrace.monotonic_start_ns";
    pub const REALTIME_START_NS: &str = "alloctrace.realtime_start_ns";
}

/// Column names of the events table.
pub mod col {
    pub const TS_NS: &str = "ts_ns";
    pub const PID: &str = "pid";
    pub const TID: &str = "tid";
    pub const EVENT: &str = "event";
    pub const FUNC: &str = "func";
    pub const ADDR: &str = "addr";
    pub const SIZE: &str = "size";
    pub const OLD_ADDR: &str = "old_addr";
    pub const ALIGN: &str = "align";
    pub const RUNTIME: &str = "runtime";
    pub const DOMAIN: &str = "domain";
    pub const STACK_ID: &str = "stack_id";
    pub const OLD_SIZE: &str = "old_size";
    pub const PROT: &str = "prot";
    pub const MAP_FLAGS: &str = "map_flags";
    pub const FD: &str = "fd";
    pub const ERRNO: &str = "errno";
    pub const GC_CYCLE: &str = "gc_cycle";
    pub const GC_GENERATION: &str = "gc_generation";
    pub const HEAP_LIVE: &str = "heap_live";
    pub const HEAP_GOAL: &str = "heap_goal";
    pub const COLLECTED: &str = "collected";
    pub const UNCOLLECTABLE: &str = "uncollectable";
    pub const REASON: &str = "reason";
    pub const GO_TYPE: &str = "go_type";
    pub const HEAP_INUSE: &str = "heap_inuse";
    pub const HEAP_IDLE: &str = "heap_idle";
    pub const HEAP_RELEASED: &str = "heap_released";
    pub const STACK_INUSE: &str = "stack_inuse";
    pub const GC_CPU_NS: &str = "gc_cpu_ns";
    pub const CPU_CAPACITY_NS: &str = "cpu_capacity_ns";
    pub const GOMAXPROCS: &str = "gomaxprocs";
    /// `rss` rows: the process's resident set size.
    pub const RSS_BYTES: &str = "rss_bytes";
    /// `rss` rows: resident bytes of the process's anonymous memory (brk heap and anonymous
    /// writable mappings); see docs/schema.md for what it includes.
    pub const HEAP_RSS_BYTES: &str = "heap_rss_bytes";
}

/// The Arrow type of the string columns: dictionary-encoded, as their values repeat. The values
/// of `event`, `runtime` and `domain` are [`crate::names`].
pub fn dict_utf8() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8))
}

static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let u64_col = |name: &str, nullable| Field::new(name, DataType::UInt64, nullable);
    Arc::new(Schema::new(vec![
        u64_col(col::TS_NS, false),
        Field::new(col::PID, DataType::UInt32, false),
        Field::new(col::TID, DataType::UInt32, false),
        Field::new(col::EVENT, dict_utf8(), false),
        Field::new(col::FUNC, dict_utf8(), false),
        u64_col(col::ADDR, false),
        u64_col(col::SIZE, false),
        u64_col(col::OLD_ADDR, true),
        u64_col(col::ALIGN, true),
        Field::new(col::RUNTIME, dict_utf8(), false),
        Field::new(col::DOMAIN, dict_utf8(), true),
        Field::new(col::STACK_ID, DataType::UInt32, true),
        u64_col(col::OLD_SIZE, true),
        Field::new(col::PROT, DataType::UInt32, true),
        Field::new(col::MAP_FLAGS, DataType::UInt32, true),
        Field::new(col::FD, DataType::Int32, true),
        Field::new(col::ERRNO, DataType::UInt32, true),
        u64_col(col::GC_CYCLE, true),
        Field::new(col::GC_GENERATION, DataType::UInt32, true),
        u64_col(col::HEAP_LIVE, true),
        u64_col(col::HEAP_GOAL, true),
        u64_col(col::COLLECTED, true),
        u64_col(col::UNCOLLECTABLE, true),
        Field::new(col::REASON, dict_utf8(), true),
        Field::new(col::GO_TYPE, dict_utf8(), true),
        u64_col(col::HEAP_INUSE, true),
        u64_col(col::HEAP_IDLE, true),
        u64_col(col::HEAP_RELEASED, true),
        u64_col(col::STACK_INUSE, true),
        u64_col(col::GC_CPU_NS, true),
        u64_col(col::CPU_CAPACITY_NS, true),
        Field::new(col::GOMAXPROCS, DataType::UInt32, true),
        u64_col(col::RSS_BYTES, true),
        u64_col(col::HEAP_RSS_BYTES, true),
    ]))
});

/// The schema of `events/*.parquet`.
pub fn events_schema() -> SchemaRef {
    EVENTS_SCHEMA.clone()
}

/// One line per column, `name: type[, nullable]`; committed as `schema.snapshot.txt`.
pub fn schema_snapshot() -> String {
    let mut out = format!(
        "# trace schema, version {SCHEMA_VERSION}. DO NOT EDIT: generated by trace_format::schema::schema_snapshot\n"
    );
    for (table, schema) in [
        ("events", events_schema()),
        ("stacks", stacks_schema()),
        ("modules", modules_schema()),
        ("frames", frames_schema()),
        ("processes", processes_schema()),
    ] {
        out.push_str(&format!("[{table}]\n"));
        for field in schema.fields() {
            let nullable = if field.is_nullable() {
                ", nullable"
            } else {
                ""
            };
            out.push_str(&format!(
                "{}: {}{}\n",
                field.name(),
                field.data_type(),
                nullable
            ));
        }
    }
    out
}

/// Column names of `stacks.parquet` and `modules.parquet`.
pub mod stack_col {
    pub const STACK_ID: &str = "stack_id";
    /// Return addresses, innermost first; the first is the probed instruction itself.
    pub const FRAMES: &str = "frames";
    /// The Python stack at the allocation (CPython 3.11–3.13 frame chain), innermost first; null
    /// for stacks without Python frames. Items are structs of [`PY_FUNCTION`], [`PY_FILE`],
    /// [`PY_LINE`].
    pub const PYTHON_FRAMES: &str = "python_frames";
    /// `co_qualname` of the frame's code object (`Class.method`, `f.<locals>.g`).
    pub const PY_FUNCTION: &str = "function";
    /// `co_filename`.
    pub const PY_FILE: &str = "file";
    /// The line of the instruction executing in that frame (null when the location table has
    /// none for it).
    pub const PY_LINE: &str = "line";
    pub const PID: &str = "pid";
    pub const PATH: &str = "path";
    pub const BUILD_ID: &str = "build_id";
    pub const START: &str = "start";
    pub const END: &str = "end";
    pub const FILE_OFFSET: &str = "file_offset";
    pub const PERMS: &str = "perms";
    pub const TS_NS: &str = "ts_ns";
}

/// The struct type of a `python_frames` item.
pub fn python_frame_type() -> DataType {
    use stack_col::*;
    DataType::Struct(
        vec![
            Field::new(PY_FUNCTION, DataType::Utf8, false),
            Field::new(PY_FILE, DataType::Utf8, false),
            Field::new(PY_LINE, DataType::UInt32, true),
        ]
        .into(),
    )
}

/// `stacks.parquet`: the call stacks that events' `stack_id` refers to.
pub fn stacks_schema() -> SchemaRef {
    use stack_col::*;
    let item = Arc::new(Field::new("item", DataType::UInt64, false));
    let py_item = Arc::new(Field::new("item", python_frame_type(), false));
    Arc::new(Schema::new(vec![
        Field::new(STACK_ID, DataType::UInt32, false),
        Field::new(FRAMES, DataType::List(item), false),
        Field::new(PYTHON_FRAMES, DataType::List(py_item), true),
    ]))
}

/// `modules.parquet`: the executable file mappings of the traced processes, so stack addresses
/// can be symbolized offline (address → module, file offset → symbol), checked by build id.
pub fn modules_schema() -> SchemaRef {
    use stack_col::*;
    Arc::new(Schema::new(vec![
        Field::new(PID, DataType::UInt32, false),
        Field::new(PATH, DataType::Utf8, false),
        Field::new(BUILD_ID, DataType::Utf8, true),
        Field::new(START, DataType::UInt64, false),
        Field::new(END, DataType::UInt64, false),
        Field::new(FILE_OFFSET, DataType::UInt64, false),
        Field::new(PERMS, DataType::Utf8, false),
        Field::new(TS_NS, DataType::UInt64, false),
    ]))
}

/// Column names of `processes.parquet`.
pub mod process_col {
    pub const PID: &str = "pid";
    /// The parent's pid when the process was made (null: unknown).
    pub const PPID: &str = "ppid";
    /// When the process was made (fork, or alloctrace starting the command), on the events'
    /// clock (`ts_ns`). With `pid` it is the key of a process: a pid the kernel reuses during
    /// the recording gives a second row with a later `start_ns`.
    pub const START_NS: &str = "start_ns";
    /// When its last thread exited; null while it was still running at the end.
    pub const END_NS: &str = "end_ns";
    /// `end_ns - start_ns`: how long the process ran (null while running at the end).
    pub const DURATION_NS: &str = "duration_ns";
    /// The program it ran last (after its last exec), from `/proc/PID/exe`.
    pub const EXE: &str = "exe";
    /// Its command line after its last exec, from `/proc/PID/cmdline`.
    pub const ARGV: &str = "argv";
    /// Execs seen during the recording.
    pub const EXECS: &str = "execs";
    /// Exit code (`exit_group`), null if it did not exit that way or was still running.
    pub const EXIT_CODE: &str = "exit_code";
    /// The signal that ended it, null if none.
    pub const EXIT_SIGNAL: &str = "exit_signal";
    /// The language runtimes whose probes it hit (`native`, `go`, `python`, comma-separated).
    pub const RUNTIME: &str = "runtime";
    /// Rows of `events` with this pid between `start_ns` and `end_ns`.
    pub const EVENTS: &str = "events";
}

/// `processes.parquet`: every process traced (the top process and, unless `--no-follow`, its
/// descendants). Rows of `events` belong to the process with their `pid` whose
/// `[start_ns, end_ns]` holds their `ts_ns`.
pub fn processes_schema() -> SchemaRef {
    use process_col::*;
    let item = Arc::new(Field::new("item", DataType::Utf8, false));
    Arc::new(Schema::new(vec![
        Field::new(PID, DataType::UInt32, false),
        Field::new(PPID, DataType::UInt32, true),
        Field::new(START_NS, DataType::UInt64, false),
        Field::new(END_NS, DataType::UInt64, true),
        Field::new(DURATION_NS, DataType::UInt64, true),
        Field::new(EXE, DataType::Utf8, true),
        Field::new(ARGV, DataType::List(item), false),
        Field::new(EXECS, DataType::UInt32, false),
        Field::new(EXIT_CODE, DataType::Int32, true),
        Field::new(EXIT_SIGNAL, DataType::Int32, true),
        Field::new(RUNTIME, DataType::Utf8, false),
        Field::new(EVENTS, DataType::UInt64, false),
    ]))
}

/// Column names of `frames.parquet`.
pub mod frame_col {
    pub const PID: &str = "pid";
    /// The frame as it appears in `stacks.parquet` `frames` (absolute, unadjusted).
    pub const ADDRESS: &str = "address";
    /// Whether the address is a return address, looked up at `address − 1` (every frame but a
    /// stack's first).
    pub const RETURN_ADDRESS: &str = "return_address";
    /// 0 for the innermost function at the address; inlined frames come first, the function
    /// that contains the code (`inlined` false) last.
    pub const DEPTH: &str = "depth";
    pub const INLINED: &str = "inlined";
    pub const MODULE: &str = "module";
    pub const BUILD_ID: &str = "build_id";
    /// File offset in `module` of the looked-up address.
    pub const MODULE_OFFSET: &str = "module_offset";
    pub const FUNCTION: &str = "function";
    pub const FILE: &str = "file";
    pub const LINE: &str = "line";
    pub const COLUMN: &str = "column";
    pub const STATUS: &str = "status";
}

/// Values of the `frames.parquet` `status` column.
pub mod frame_status {
    /// A function was found (file and line when debug information has them).
    pub const OK: &str = "ok";
    /// The file has symbols, but none covers the address.
    pub const NO_SYMBOLS: &str = "no_symbols";
    /// The file on disk is not the one that was mapped: its build id differs.
    pub const BUILD_ID_MISMATCH: &str = "build_id_mismatch";
    /// The mapped file no longer exists or cannot be read.
    pub const MISSING_FILE: &str = "missing_file";
    /// The file has no symbol table, no debug information and no separate debug file, and no
    /// exported symbol covers the address.
    pub const STRIPPED: &str = "stripped";
    /// The address is in no file mapping of the process (JIT code, vDSO, a damaged stack).
    pub const UNMAPPED: &str = "unmapped";
}

/// `frames.parquet`: what every stack address is (written by `alloctrace symbolize`). One row
/// per (pid, address, return_address, depth).
pub fn frames_schema() -> SchemaRef {
    use frame_col::*;
    Arc::new(Schema::new(vec![
        Field::new(PID, DataType::UInt32, false),
        Field::new(ADDRESS, DataType::UInt64, false),
        Field::new(RETURN_ADDRESS, DataType::Boolean, false),
        Field::new(DEPTH, DataType::UInt16, false),
        Field::new(INLINED, DataType::Boolean, false),
        Field::new(MODULE, DataType::Utf8, true),
        Field::new(BUILD_ID, DataType::Utf8, true),
        Field::new(MODULE_OFFSET, DataType::UInt64, true),
        Field::new(FUNCTION, DataType::Utf8, true),
        Field::new(FILE, DataType::Utf8, true),
        Field::new(LINE, DataType::UInt32, true),
        Field::new(COLUMN, DataType::UInt32, true),
        Field::new(STATUS, DataType::Utf8, false),
    ]))
}

/// File names of the side tables in a trace directory.
pub const STACKS_FILE: &str = "stacks.parquet";
pub const MODULES_FILE: &str = "modules.parquet";
pub const FRAMES_FILE: &str = "frames.parquet";
pub const PROCESSES_FILE: &str = "processes.parquet";

/// Name of the events folder inside a trace directory.
pub const EVENTS_DIR: &str = "events";
/// Name of the run metadata file inside a trace directory.
pub const RUN_JSON: &str = "run.json";
/// What `alloctrace report` writes into a trace directory by default.
pub const REPORT_FILE: &str = "report.html";
pub const SUMMARY_FILE: &str = "summary.json";

/// Every file of a trace directory besides `events/`: what `record --force` replaces.
pub const TRACE_FILES: [&str; 7] = [
    RUN_JSON,
    STACKS_FILE,
    MODULES_FILE,
    PROCESSES_FILE,
    FRAMES_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
];

/// File name of segment `index`.
pub fn segment_file_name(index: u32) -> String {
    format!("part-{index:06}.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the committed snapshot matches the schema, so docs and notebooks never drift
    /// from the code. Regenerate with `ALLOCTRACE_BLESS=1 cargo test -p alloctrace-format`.
    #[test]
    fn snapshot_matches() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.snapshot.txt");
        let actual = schema_snapshot();
        if std::env::var_os("ALLOCTRACE_BLESS").is_some() {
            std::fs::write(path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            expected, actual,
            "schema changed: update docs/schema.md and bless the snapshot"
        );
    }

    /// Check that the data-contract columns exist with their contract types.
    #[test]
    fn contract_columns() {
        let schema = events_schema();
        for (name, ty) in [
            (col::TS_NS, DataType::UInt64),
            (col::PID, DataType::UInt32),
            (col::TID, DataType::UInt32),
            (col::ADDR, DataType::UInt64),
            (col::SIZE, DataType::UInt64),
            (col::OLD_ADDR, DataType::UInt64),
        ] {
            assert_eq!(
                schema.field_with_name(name).unwrap().data_type(),
                &ty,
                "{name}"
            );
        }
        assert!(schema.field_with_name(col::OLD_ADDR).unwrap().is_nullable());
        assert_eq!(
            schema.field_with_name(col::EVENT).unwrap().data_type(),
            &dict_utf8()
        );
        assert_eq!(
            schema.field_with_name(col::FUNC).unwrap().data_type(),
            &dict_utf8()
        );
    }
}
