//! Shared by the tests: building the test programs, running alloctrace, reading traces.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use arrow::{
    array::AsArray,
    datatypes::{UInt16Type, UInt32Type, UInt64Type},
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use trace_format::{run::RunInfo, schema::col};

pub fn alloctrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alloctrace"))
}

fn programs_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-programs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles a test program from `tests/programs/` with `compiler` and `flags`; returns the binary.
pub fn build(source: &str, compiler: &str, flags: &[&str]) -> PathBuf {
    let src = programs_src().join(source);
    let stem = Path::new(source)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let suffix: String = flags
        .iter()
        .map(|f| f.replace(['-', '=', '/'], ""))
        .collect::<Vec<_>>()
        .join("");
    let bin = out_dir().join(format!("{stem}{suffix}"));
    let mut cmd = Command::new(compiler);
    if compiler == "rustc" {
        cmd.args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "force-frame-pointers=yes",
            "-o",
        ])
        .arg(&bin)
        .arg(&src);
    } else {
        cmd.args(["-O2", "-g", "-fno-omit-frame-pointer", "-o"])
            .arg(&bin)
            .arg(&src);
    }
    cmd.args(flags);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        out.status.success(),
        "{compiler} {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("alloctrace-test")
        .tempdir()
        .unwrap()
}

/// Runs `alloctrace record -o DIR -- command...`.
pub fn record(dir: &Path, command: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    record_with(dir, &[], command)
}

/// Runs `alloctrace record -o DIR EXTRA... -- command...`.
pub fn record_with(dir: &Path, extra: &[&str], command: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = alloctrace();
    cmd.args(["record", "-q", "--force", "-o"])
        .arg(dir)
        .args(extra)
        .arg("--");
    for arg in command {
        cmd.arg(arg);
    }
    cmd.output().unwrap()
}

/// The first line of a program's stdout parsed as JSON (its own counters).
pub fn counters(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {text:?}"));
    serde_json::from_str(line).unwrap()
}

/// One row of a trace, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub event: String,
    pub func: String,
    pub addr: u64,
    pub size: u64,
    pub old_addr: Option<u64>,
    pub align: Option<u64>,
    pub stack_id: Option<u32>,
}

pub struct Trace {
    pub run: RunInfo,
    pub rows: Vec<Row>,
}

/// Every record batch of the trace's event segments, in order.
pub fn event_batches(dir: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let run = RunInfo::read(dir).unwrap();
    let mut batches = Vec::new();
    for segment in &run.segments {
        let file = File::open(dir.join(segment)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            batches.push(batch.unwrap());
        }
    }
    batches
}

/// A dictionary-encoded string column, null rows as `None`.
pub fn strings(batch: &arrow::record_batch::RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(name).unwrap();
    let dict = column.as_dictionary::<UInt16Type>();
    let values = dict.values().as_string::<i32>();
    dict.keys()
        .iter()
        .map(|k| k.map(|k| values.value(k as usize).to_owned()))
        .collect()
}

/// A dictionary-encoded string column without nulls.
fn dict_strings(batch: &arrow::record_batch::RecordBatch, name: &str) -> Vec<String> {
    strings(batch, name)
        .into_iter()
        .map(|s| s.expect("a null in a non-null column"))
        .collect()
}

fn u64s(batch: &arrow::record_batch::RecordBatch, name: &str) -> Vec<Option<u64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<UInt64Type>()
        .iter()
        .collect()
}

impl Trace {
    /// Reads run.json and every segment listed in it.
    pub fn load(dir: &Path) -> Trace {
        let run = RunInfo::read(dir).unwrap();
        let mut rows = Vec::new();
        for batch in event_batches(dir) {
            let ts = u64s(&batch, col::TS_NS);
            let pid = batch
                .column_by_name(col::PID)
                .unwrap()
                .as_primitive::<UInt32Type>()
                .clone();
            let tid = batch
                .column_by_name(col::TID)
                .unwrap()
                .as_primitive::<UInt32Type>()
                .clone();
            let (event, func) = (
                dict_strings(&batch, col::EVENT),
                dict_strings(&batch, col::FUNC),
            );
            let (addr, size) = (u64s(&batch, col::ADDR), u64s(&batch, col::SIZE));
            let (old, align) = (u64s(&batch, col::OLD_ADDR), u64s(&batch, col::ALIGN));
            let stack: Vec<Option<u32>> = batch
                .column_by_name(col::STACK_ID)
                .unwrap()
                .as_primitive::<UInt32Type>()
                .iter()
                .collect();
            for i in 0..batch.num_rows() {
                rows.push(Row {
                    ts_ns: ts[i].unwrap(),
                    pid: pid.value(i),
                    tid: tid.value(i),
                    event: event[i].clone(),
                    func: func[i].clone(),
                    addr: addr[i].unwrap(),
                    size: size[i].unwrap(),
                    old_addr: old[i],
                    align: align[i],
                    stack_id: stack[i],
                });
            }
        }
        assert_eq!(
            rows.len() as u64,
            run.events_written,
            "run.json events_written"
        );
        Trace { run, rows }
    }

    /// (calls, bytes) per func among rows of `event` matching `filter`.
    pub fn per_func(
        &self,
        event: &str,
        filter: impl Fn(&Row) -> bool,
    ) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        for row in self.rows.iter().filter(|r| r.event == event && filter(r)) {
            let entry = out.entry(row.func.clone()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += row.size;
        }
        out
    }

    /// Replays allocations and frees in trace order and returns the blocks live at the end and
    /// the number of frees of addresses never allocated in the trace.
    ///
    /// Panics on a double free (a block freed again after it was freed, with no allocation in
    /// between): that would mean a missed allocation or a row written twice. Frees of addresses
    /// never seen are allowed: glibc allocates a thread's tcache internally (not through
    /// malloc) and frees it with `free` when the thread exits.
    pub fn replay(&self, pid: u32) -> (BTreeMap<u64, Row>, usize) {
        let mut live: BTreeMap<u64, Row> = BTreeMap::new();
        let mut ever: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut unmatched = 0;
        let release = |live: &mut BTreeMap<u64, Row>,
                       ever: &std::collections::HashSet<u64>,
                       addr: u64,
                       row: &Row|
         -> usize {
            if live.remove(&addr).is_some() {
                return 0;
            }
            assert!(!ever.contains(&addr), "double free: {row:?}");
            1
        };
        for row in self.rows.iter().filter(|r| r.pid == pid) {
            match row.event.as_str() {
                "alloc" if row.addr != 0 => {
                    assert!(
                        live.insert(row.addr, row.clone()).is_none(),
                        "{row:?} allocated twice"
                    );
                }
                "free" => unmatched += release(&mut live, &ever, row.addr, row),
                "realloc" => {
                    let old = row.old_addr.unwrap();
                    let freed = row.addr != 0 || row.size == 0;
                    if old != 0 && freed {
                        unmatched += release(&mut live, &ever, old, row);
                    }
                    if row.addr != 0 {
                        assert!(
                            live.insert(row.addr, row.clone()).is_none(),
                            "{row:?} allocated twice"
                        );
                    }
                }
                _ => {}
            }
            if matches!(row.event.as_str(), "alloc" | "realloc") && row.addr != 0 {
                ever.insert(row.addr);
            }
        }
        (live, unmatched)
    }
}

/// Asserts a run succeeded, showing its stderr when it did not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a bad-input run failed cleanly: non-zero exit, exactly one line on stderr that
/// contains `expected`, no panic.
pub fn assert_clean_failure(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {:?}; stderr: {stderr}",
        out.status
    );
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(stderr.contains(expected), "{expected:?} not in {stderr:?}");
}
