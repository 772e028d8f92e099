//! Exporting traces into a Hive-style dataset (`analysis::dataset`): layout, sort order,
//! statistics, row preservation, idempotence and errors, on traces written with the real
//! writer.

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use analysis::{
    dataset::{self, DatasetError, ExportOptions, TRACE_ROW},
    report::{self, Options},
    summary::Summary,
};
use arrow::{
    array::{Array, AsArray, RecordBatch},
    datatypes::{UInt32Type, UInt64Type},
};
use common::*;
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    file::{
        metadata::ParquetMetaData, reader::FileReader, serialized_reader::SerializedFileReader,
        statistics::Statistics,
    },
};
use trace_format::{
    names::Event,
    run::RunInfo,
    schema,
    write::{self, ModuleRow, Row, WriterOptions},
};

/// Rows of three processes whose timestamps interleave and step back a little (as between
/// CPUs), with frees, reallocs, mmaps and stacks: everything the sort must keep together.
fn mixed_rows(n: u64) -> Vec<Row<'static>> {
    let mut rng = fastrand::Rng::with_seed(8);
    let mut rows = Vec::new();
    for i in 0..n {
        let pid = [100, 7, 4000][rng.usize(0..3)];
        // Mostly increasing, with sub-microsecond disorder.
        let ts_ns = 1_000_000 + i * 50 - rng.u64(0..120);
        let addr = HEAP + 0x40 * (i % 500);
        let row = match i % 5 {
            0 | 1 => Row {
                stack_id: Some(rng.u32(0..10)),
                ..alloc(ts_ns, addr, 16 + i % 300)
            },
            2 => free(ts_ns, addr),
            3 => realloc(ts_ns, addr, addr + 0x10, 64),
            _ => Row {
                ts_ns,
                event: Event::Mmap,
                func: "mmap",
                addr: 0x7000_0000 + i * 0x1000,
                size: 0x1000,
                prot: Some(3),
                map_flags: Some(0x22),
                fd: Some(-1),
                ..Row::default()
            },
        };
        rows.push(Row {
            pid,
            tid: pid + (i % 2) as u32,
            ..row
        });
    }
    rows
}

/// Writes `rows` as a trace in segments of `segment_rows`, with a hostname in run.json.
fn write_mixed_trace(dir: &Path, rows: &[Row<'_>], segment_rows: usize) {
    write_trace_with(dir, rows, segment_rows, None);
    let mut run = RunInfo::read(dir).unwrap();
    run.hostname = "test-host".into();
    run.write(dir).unwrap();
}

/// (pid, ts_ns, trace_row, event, addr, size) of every row of the dataset run, in file order.
type Key = (u32, u64, u64, String, u64, u64);

fn read_run(run_dir: &Path) -> Vec<Key> {
    let mut files: Vec<PathBuf> = fs::read_dir(run_dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            assert_eq!(batch.schema(), dataset::events_schema());
            out.extend(keys(&batch));
        }
    }
    out
}

fn keys(batch: &RecordBatch) -> Vec<Key> {
    let u64s = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .clone()
    };
    let pid = batch
        .column_by_name("pid")
        .unwrap()
        .as_primitive::<UInt32Type>()
        .clone();
    let event = arrow::compute::cast(
        batch.column_by_name("event").unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let event = event.as_string::<i32>();
    let (ts, row, addr, size) = (u64s("ts_ns"), u64s(TRACE_ROW), u64s("addr"), u64s("size"));
    (0..batch.num_rows())
        .map(|i| {
            (
                pid.value(i),
                ts.value(i),
                row.value(i),
                event.value(i).to_owned(),
                addr.value(i),
                size.value(i),
            )
        })
        .collect()
}

fn metadata(file: &Path) -> ParquetMetaData {
    SerializedFileReader::new(fs::File::open(file).unwrap())
        .unwrap()
        .metadata()
        .clone()
}

fn events_files(run_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(run_dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn small_groups() -> ExportOptions {
    ExportOptions {
        row_group_rows: 100,
        file_rows: 1000,
        ..ExportOptions::default()
    }
}

/// Every file under `dir` (relative path → bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_owned(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn assert_one_line(err: &DatasetError) {
    let text = err.to_string();
    assert!(
        !text.is_empty() && !text.contains('\n'),
        "error display must be one line: {text:?}"
    );
}

/// Check that the run lands at `root/host=H/run=R` with the defaults from run.json (hostname;
/// UTC start time and first pid) and carries run.json, the events and the side tables.
#[test]
fn hive_path_and_side_files() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    let rows = mixed_rows(300);
    write_mixed_trace(&trace, &rows, usize::MAX);
    let stacks = write::stacks_batch(&[(1, vec![0x1000, 0x2000])]).unwrap();
    write::write_table(&trace.join(schema::STACKS_FILE), &stacks).unwrap();
    let modules = write::modules_batch(&[ModuleRow {
        pid: PID,
        path: "/usr/bin/test-program".into(),
        build_id: None,
        start: 0x1000,
        end: 0x3000,
        file_offset: 0,
        perms: "r-xp".into(),
        ts_ns: 0,
    }])
    .unwrap();
    write::write_table(&trace.join(schema::MODULES_FILE), &modules).unwrap();

    let root = tmp.path().join("dataset");
    let summary = dataset::export(&trace, &root, &ExportOptions::default()).unwrap();
    // realtime_start_ns 1.7e18 is 2023-11-14T22:13:20Z; run.json's first pid is the first row's.
    let expected = root
        .join("host=test-host")
        .join(format!("run=20231114T221320Z-{}", rows[0].pid));
    assert_eq!(summary.run_dir, expected);
    assert_eq!(
        summary.run_dir,
        dataset::run_dir(&root, &summary.host, &summary.run)
    );
    assert_eq!(summary.files, vec!["events/part-000000.parquet"]);
    assert_eq!(
        summary.side_files,
        vec!["run.json", "stacks.parquet", "modules.parquet"]
    );
    for name in ["run.json", "stacks.parquet", "modules.parquet"] {
        assert_eq!(
            fs::read(expected.join(name)).unwrap(),
            fs::read(trace.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(summary.pids, vec![7, 100, 4000]);
    assert!(!summary.replaced);
    // Nothing but the run is left in the host directory (no staging or spill leftovers).
    let entries: Vec<String> = fs::read_dir(root.join("host=test-host"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    // Explicit partition values win over the defaults.
    let options = ExportOptions {
        host: Some("ci".into()),
        run: Some("nightly-1".into()),
        ..ExportOptions::default()
    };
    let summary = dataset::export(&trace, &root, &options).unwrap();
    assert_eq!(summary.run_dir, root.join("host=ci/run=nightly-1"));
}

/// Check that the events come out sorted by (pid, ts_ns, trace_row), that every row of the
/// trace is there exactly once, and that `trace_row` points back at the original row.
#[test]
fn sorted_and_rows_preserved() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    let rows = mixed_rows(2500);
    write_mixed_trace(&trace, &rows, 700);
    let summary = dataset::export(&trace, &tmp.path().join("ds"), &small_groups()).unwrap();
    assert_eq!(summary.rows, rows.len() as u64);
    assert_eq!(summary.spilled_chunks, 0);
    assert_eq!(summary.files.len(), 3);
    let got = read_run(&summary.run_dir);
    assert_eq!(got.len(), rows.len());
    assert!(
        got.windows(2)
            .all(|w| (w[0].0, w[0].1, w[0].2) < (w[1].0, w[1].1, w[1].2)),
        "not sorted by (pid, ts_ns, trace_row)"
    );
    let mut seen = vec![false; rows.len()];
    for (pid, ts, trace_row, event, addr, size) in &got {
        let original = &rows[*trace_row as usize];
        assert!(!seen[*trace_row as usize], "row {trace_row} twice");
        seen[*trace_row as usize] = true;
        assert_eq!(
            (*pid, *ts, event.as_str(), *addr, *size),
            (
                original.pid,
                original.ts_ns,
                original.event.as_str(),
                original.addr,
                original.size
            )
        );
    }
    assert!(seen.iter().all(|s| *s));
}

/// Check that a trace larger than the sort buffer (sorted externally, in spilled chunks) gives
/// the same bytes as one sorted in memory.
#[test]
fn external_sort_matches_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    write_mixed_trace(&trace, &mixed_rows(3000), 1000);
    let in_memory = dataset::export(&trace, &tmp.path().join("a"), &small_groups()).unwrap();
    let options = ExportOptions {
        sort_rows: 256,
        ..small_groups()
    };
    let external = dataset::export(&trace, &tmp.path().join("b"), &options).unwrap();
    assert!(external.spilled_chunks >= 10, "{}", external.spilled_chunks);
    assert_eq!(in_memory.files, external.files);
    assert_eq!(snapshot(&in_memory.run_dir), snapshot(&external.run_dir));
}

/// Check that every row group has min/max statistics for pid and ts_ns, at most
/// `row_group_rows` rows, the declared sort order and the dataset metadata, and that row
/// groups of one process cover disjoint time ranges, which is what lets engines prune.
#[test]
fn statistics_and_row_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    write_mixed_trace(&trace, &mixed_rows(2500), usize::MAX);
    let summary = dataset::export(&trace, &tmp.path().join("ds"), &small_groups()).unwrap();
    assert_eq!(summary.row_groups, 25);
    let mut groups = Vec::new();
    for file in events_files(&summary.run_dir) {
        let meta = metadata(&file);
        let kv: BTreeMap<String, String> = meta
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv["alloctrace.dataset.sorted_by"], "pid,ts_ns,trace_row");
        assert_eq!(kv["alloctrace.dataset.host"], "test-host");
        assert_eq!(kv["alloctrace.schema_version"], "1");
        for rg in meta.row_groups() {
            assert!(rg.num_rows() <= 100);
            let sorting = rg.sorting_columns().unwrap();
            let names: Vec<String> = sorting
                .iter()
                .map(|s| rg.column(s.column_idx as usize).column_path().string())
                .collect();
            assert_eq!(names, ["pid", "ts_ns", "trace_row"]);
            let (pid_min, pid_max) = match rg.column(1).statistics() {
                Some(Statistics::Int32(s)) => {
                    (*s.min_opt().unwrap() as u32, *s.max_opt().unwrap() as u32)
                }
                other => panic!("pid statistics: {other:?}"),
            };
            let (ts_min, ts_max) = match rg.column(0).statistics() {
                Some(Statistics::Int64(s)) => {
                    (*s.min_opt().unwrap() as u64, *s.max_opt().unwrap() as u64)
                }
                other => panic!("ts_ns statistics: {other:?}"),
            };
            groups.push((pid_min, pid_max, ts_min, ts_max));
        }
        // The page index is written too (engines that read it prune pages, not only groups).
        let with_index = ParquetRecordBatchReaderBuilder::try_new_with_options(
            fs::File::open(&file).unwrap(),
            parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_page_index(true),
        )
        .unwrap();
        assert!(with_index.metadata().column_index().is_some());
    }
    assert_eq!(groups.len(), 25);
    for pair in groups.windows(2) {
        let ((p0, p1, _, t1), (q0, q1, u0, _)) = (pair[0], pair[1]);
        assert!(p0 <= p1 && p1 <= q0, "pids out of order: {pair:?}");
        if p0 == p1 && p1 == q0 && q0 == q1 {
            assert!(t1 <= u0, "time ranges of one pid overlap: {pair:?}");
        }
    }
    // A filter on one pid and a 10 µs window (about 70 of that pid's rows) matches few row
    // groups by statistics alone: the one or two holding the window, and at most the two
    // straddling that pid's first and last rows (their time range spans two processes).
    let matching = groups
        .iter()
        .filter(|(lo, hi, t0, t1)| *lo <= 100 && 100 <= *hi && *t1 >= 1_040_000 && *t0 <= 1_050_000)
        .count();
    assert!(matching <= 4, "{matching} of {} row groups", groups.len());
}

/// Check that exporting the same trace again replaces the run with byte-identical files and
/// leaves no staging or backup directory behind.
#[test]
fn idempotent_re_export() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    write_mixed_trace(&trace, &mixed_rows(1200), 500);
    let root = tmp.path().join("ds");
    let first = dataset::export(&trace, &root, &small_groups()).unwrap();
    let before = snapshot(&root);
    let second = dataset::export(&trace, &root, &small_groups()).unwrap();
    assert!(second.replaced);
    assert_eq!(first.run_dir, second.run_dir);
    assert_eq!(before, snapshot(&root));
}

/// Check that a dataset run is a trace directory the reports read, and that exporting it
/// again keeps `trace_row` (the original causal order) instead of renumbering sorted rows.
#[test]
fn run_dir_is_a_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    // One process, timestamps strictly increasing: the sort changes nothing, so the report
    // of the run equals the report of the trace.
    let rows: Vec<Row<'static>> = (0..400u64)
        .map(|i| {
            if i % 2 == 0 {
                alloc(1000 + i, HEAP + 0x100 * i, 24 + i)
            } else {
                free(1000 + i, HEAP + 0x100 * (i - 1))
            }
        })
        .collect();
    write_trace(&trace, &rows);
    let summary = dataset::export(&trace, &tmp.path().join("ds"), &small_groups()).unwrap();
    let original = report::build(&trace, &Options::default()).unwrap();
    let from_run = report::build(&summary.run_dir, &Options::default()).unwrap();
    assert_eq!(original.counters, from_run.counters);
    assert_eq!(
        Summary::from_report(&original).peak_live_bytes,
        Summary::from_report(&from_run).peak_live_bytes
    );

    let mixed = tmp.path().join("mixed");
    write_mixed_trace(&mixed, &mixed_rows(900), usize::MAX);
    let once = dataset::export(&mixed, &tmp.path().join("ds1"), &small_groups()).unwrap();
    let twice = dataset::export(&once.run_dir, &tmp.path().join("ds2"), &small_groups()).unwrap();
    assert_eq!(read_run(&once.run_dir), read_run(&twice.run_dir));
    assert!(twice.dropped_columns.is_empty());
}

/// Check that a segment written by an older writer (an optional column missing) or a newer
/// one (an unknown column) is exported: the missing column as nulls, the unknown one left out
/// and reported.
#[test]
fn older_and_newer_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    write_mixed_trace(&trace, &mixed_rows(200), usize::MAX);
    let path = trace.join("events/part-000000.parquet");
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let schema = batches[0].schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != "go_type")
        .collect();
    let mut fields: Vec<_> = schema.project(&keep).unwrap().fields().to_vec();
    fields.push(
        arrow::datatypes::Field::new("future_column", arrow::datatypes::DataType::Int64, true)
            .into(),
    );
    let new_schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    let mut writer =
        ArrowWriter::try_new(fs::File::create(&path).unwrap(), new_schema.clone(), None).unwrap();
    for batch in &batches {
        let mut columns = batch.project(&keep).unwrap().columns().to_vec();
        columns.push(std::sync::Arc::new(arrow::array::Int64Array::from(vec![
            5;
            batch.num_rows()
        ])));
        writer
            .write(&RecordBatch::try_new(new_schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();

    let summary = dataset::export(&trace, &tmp.path().join("ds"), &small_groups()).unwrap();
    assert_eq!(summary.rows, 200);
    assert_eq!(summary.dropped_columns, vec!["future_column"]);
    let file = &events_files(&summary.run_dir)[0];
    let batch = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let go_type = batch.column_by_name("go_type").unwrap();
    assert_eq!(go_type.null_count(), go_type.len());
}

/// Check that a missing trace, a directory without run.json, a damaged run.json, a truncated
/// segment and a damaged stacks.parquet each give a one-line typed error naming the problem,
/// and that a failed export leaves nothing in the dataset.
#[test]
fn missing_and_damaged_traces() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ds");
    let options = ExportOptions {
        host: Some("h".into()),
        ..ExportOptions::default()
    };
    let err = dataset::export(&tmp.path().join("nope"), &root, &options).unwrap_err();
    assert!(matches!(err, DatasetError::Trace(_)), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    assert_one_line(&err);

    let trace = tmp.path().join("trace");
    fs::create_dir(&trace).unwrap();
    let err = dataset::export(&trace, &root, &options).unwrap_err();
    assert!(err.to_string().contains("run.json"), "{err}");
    assert_one_line(&err);

    write_mixed_trace(&trace, &mixed_rows(500), usize::MAX);
    let run_json = fs::read_to_string(trace.join("run.json")).unwrap();
    fs::write(trace.join("run.json"), &run_json[..run_json.len() / 2]).unwrap();
    let err = dataset::export(&trace, &root, &options).unwrap_err();
    assert!(
        err.to_string().contains("not a valid alloctrace run.json"),
        "{err}"
    );
    fs::write(trace.join("run.json"), &run_json).unwrap();

    let segment = trace.join("events/part-000000.parquet");
    let good = fs::read(&segment).unwrap();
    fs::write(&segment, &good[..good.len() - 100]).unwrap();
    let err = dataset::export(&trace, &root, &options).unwrap_err();
    assert!(err.to_string().contains("part-000000.parquet"), "{err}");
    assert_one_line(&err);
    fs::write(&segment, &good).unwrap();

    fs::write(trace.join(schema::STACKS_FILE), b"PAR1 not really").unwrap();
    let err = dataset::export(&trace, &root, &options).unwrap_err();
    assert!(matches!(err, DatasetError::Parquet { .. }), "{err}");
    assert!(err.to_string().contains("stacks.parquet"), "{err}");
    assert_one_line(&err);

    let host_dir = root.join("host=h");
    assert_eq!(fs::read_dir(&host_dir).unwrap().count(), 0, "leftovers");
    fs::remove_file(trace.join(schema::STACKS_FILE)).unwrap();
    dataset::export(&trace, &root, &options).unwrap();
}

/// Check that bytes flipped at random places in a segment give a one-line error or a
/// successful export, never a panic.
#[test]
fn damaged_segments_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    write_mixed_trace(&trace, &mixed_rows(800), usize::MAX);
    let segment = trace.join("events/part-000000.parquet");
    let good = fs::read(&segment).unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let options = ExportOptions {
        host: Some("h".into()),
        ..small_groups()
    };
    for _ in 0..60 {
        let mut bytes = good.clone();
        for _ in 0..4 {
            let at = rng.usize(4..bytes.len() - 8);
            bytes[at] ^= 1 << rng.u32(0..8);
        }
        fs::write(&segment, &bytes).unwrap();
        if let Err(err) = dataset::export(&trace, &tmp.path().join("ds"), &options) {
            assert_one_line(&err);
        }
    }
}

/// Check that partition values that would break the layout are refused before anything is
/// written, and that invalid sizes are refused.
#[test]
fn invalid_options() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    write_mixed_trace(&trace, &mixed_rows(50), usize::MAX);
    let root = tmp.path().join("ds");
    for (host, run) in [
        (Some("a/b"), None),
        (None, Some(".hidden")),
        (None, Some("x=y")),
    ] {
        let options = ExportOptions {
            host: host.map(str::to_owned),
            run: run.map(str::to_owned),
            ..ExportOptions::default()
        };
        let err = dataset::export(&trace, &root, &options).unwrap_err();
        assert!(
            matches!(err, DatasetError::InvalidPartition { .. }),
            "{err}"
        );
        assert_one_line(&err);
    }
    let err = dataset::export(
        &trace,
        &root,
        &ExportOptions {
            row_group_rows: 0,
            ..ExportOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, DatasetError::InvalidOptions(_)), "{err}");
    assert!(!root.exists());
}

/// Check that a trace whose segments hold no row still exports one (empty) events file with
/// the dataset schema, so globs over the dataset always find every run's schema.
#[test]
fn empty_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    let w =
        trace_format::write::TraceWriter::create(&trace, WriterOptions::default(), vec![]).unwrap();
    drop(w);
    // A segment with the schema and no rows.
    let path = trace.join("events/part-000000.parquet");
    let writer = ArrowWriter::try_new(
        fs::File::create(&path).unwrap(),
        schema::events_schema(),
        None,
    )
    .unwrap();
    writer.close().unwrap();
    RunInfo {
        schema_version: 1,
        pids: vec![9],
        ..RunInfo::default()
    }
    .write(&trace)
    .unwrap();
    let summary =
        dataset::export(&trace, &tmp.path().join("ds"), &ExportOptions::default()).unwrap();
    assert_eq!(summary.rows, 0);
    assert_eq!(summary.host, "unknown");
    assert_eq!(summary.run, "mono0-9");
    assert_eq!(summary.ts_range, None);
    let files = events_files(&summary.run_dir);
    assert_eq!(files.len(), 1);
    assert_eq!(metadata(&files[0]).file_metadata().num_rows(), 0);
}
