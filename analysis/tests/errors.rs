//! Damaged and incomplete traces give one clear typed error, never a panic.

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod common;

use std::{fs, path::Path};

use analysis::{
    AnalysisError,
    report::{self, Options},
};
use arrow::array::RecordBatch;
use common::*;
use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
use trace_format::{
    names::{Event, Runtime},
    write::Row,
};

/// A small but varied trace: every column used by some row.
fn sample_rows() -> Vec<Row<'static>> {
    let mut rows = vec![brk(1, HEAP), brk(2, HEAP + 0x40000)];
    for i in 0..300u64 {
        rows.push(alloc(10 + i * 3, HEAP + 0x100 * i, 16 + i));
        if i % 3 == 0 {
            rows.push(free(11 + i * 3, HEAP + 0x100 * i));
        }
        if i % 7 == 0 {
            rows.push(Row {
                stack_id: Some(i as u32),
                ..realloc(
                    12 + i * 3,
                    HEAP + 0x100 * (i + 1),
                    0x9000_0000 + i * 0x100,
                    64,
                )
            });
        }
    }
    rows.push(Row {
        ts_ns: 2000,
        pid: PID,
        tid: PID,
        event: Event::Mmap,
        func: "mmap",
        addr: 0x7000_0000,
        size: 0x10000,
        prot: Some(3),
        map_flags: Some(0x22),
        fd: Some(-1),
        ..Row::default()
    });
    rows.push(Row {
        ts_ns: 2001,
        pid: PID,
        tid: PID,
        event: Event::GcStart,
        func: "gc",
        runtime: Runtime::Python,
        gc_generation: Some(1),
        ..Row::default()
    });
    rows.push(Row {
        ts_ns: 2002,
        pid: PID,
        tid: PID,
        event: Event::GcEnd,
        func: "gc",
        runtime: Runtime::Python,
        gc_generation: Some(1),
        collected: Some(3),
        ..Row::default()
    });
    rows
}

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join("events/part-000000.parquet")
}

fn build(dir: &Path) -> Result<report::Report, AnalysisError> {
    report::build(dir, &Options::default())
}

fn assert_one_line(err: &AnalysisError) {
    let text = err.to_string();
    assert!(
        !text.is_empty() && !text.contains('\n'),
        "error display must be one line: {text:?}"
    );
}

/// Check that a directory that does not exist, a file, an empty directory and a directory
/// without run.json each give their own error.
#[test]
fn missing_and_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let err = build(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, AnalysisError::NotADirectory { .. }), "{err}");
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    assert!(matches!(
        build(&file).unwrap_err(),
        AnalysisError::NotADirectory { .. }
    ));
    let err = build(dir.path()).unwrap_err();
    assert!(matches!(err, AnalysisError::MissingRunJson { .. }), "{err}");
    assert!(err.to_string().contains("run.json"));
    assert_one_line(&err);
}

/// Check that a trace whose run.json is damaged, or that has no segment, is an error.
#[test]
fn bad_run_json_and_no_segments() {
    let dir = tempfile::tempdir().unwrap();
    write_trace(dir.path(), &sample_rows());
    let run = fs::read_to_string(dir.path().join("run.json")).unwrap();
    fs::write(dir.path().join("run.json"), &run[..run.len() / 2]).unwrap();
    let err = build(dir.path()).unwrap_err();
    assert!(matches!(err, AnalysisError::InvalidRunJson { .. }), "{err}");
    assert_one_line(&err);
    fs::write(dir.path().join("run.json"), run).unwrap();
    fs::remove_file(segment(dir.path())).unwrap();
    let err = build(dir.path()).unwrap_err();
    assert!(matches!(err, AnalysisError::NoSegments { .. }), "{err}");
    assert_one_line(&err);
}

/// Check that an empty (0-byte) and a truncated segment are Parquet errors naming the file.
#[test]
fn empty_and_truncated_segments() {
    let dir = tempfile::tempdir().unwrap();
    write_trace(dir.path(), &sample_rows());
    let bytes = fs::read(segment(dir.path())).unwrap();
    fs::write(segment(dir.path()), b"").unwrap();
    let err = build(dir.path()).unwrap_err();
    assert!(matches!(err, AnalysisError::Parquet { .. }), "{err}");
    assert!(err.to_string().contains("part-000000.parquet"));
    assert_one_line(&err);
    fs::write(segment(dir.path()), &bytes[..bytes.len() - 100]).unwrap();
    let err = build(dir.path()).unwrap_err();
    assert!(matches!(err, AnalysisError::Parquet { .. }), "{err}");
}

/// Rewrites the segment without `column`.
fn drop_column(dir: &Path, column: &str) {
    let path = segment(dir);
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| schema.field(i).name() != column)
        .collect();
    let projected = schema.project(&keep).unwrap();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(&path).unwrap(), projected.into(), None).unwrap();
    for batch in &batches {
        writer.write(&batch.project(&keep).unwrap()).unwrap();
    }
    writer.close().unwrap();
}

/// Check that a segment without a required column names the column, and that a missing
/// optional column still gives a report.
#[test]
fn missing_columns() {
    let dir = tempfile::tempdir().unwrap();
    write_trace(dir.path(), &sample_rows());
    drop_column(dir.path(), "stack_id");
    let report = build(dir.path()).unwrap();
    assert!(!report.callsites.available);
    drop_column(dir.path(), "addr");
    let err = build(dir.path()).unwrap_err();
    match &err {
        AnalysisError::MissingColumn { column, .. } => assert_eq!(*column, "addr"),
        other => panic!("expected MissingColumn, got {other}"),
    }
    assert!(err.to_string().contains("`addr`"));
    assert_one_line(&err);
}

/// Check, over hundreds of damaged copies (truncated at many lengths, bytes flipped at random
/// places, every column dropped in turn), that building a report returns a report or a
/// one-line error and never panics.
#[test]
fn damaged_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    write_trace(dir.path(), &sample_rows());
    let good = fs::read(segment(dir.path())).unwrap();
    let mut rng = fastrand::Rng::with_seed(6);
    let (mut oks, mut errs) = (0, 0);
    let mut check = |dir: &Path| match build(dir) {
        Ok(_) => oks += 1,
        Err(err) => {
            assert_one_line(&err);
            errs += 1;
        }
    };
    for step in 0..64 {
        fs::write(segment(dir.path()), &good[..good.len() * step / 64]).unwrap();
        check(dir.path());
    }
    for _ in 0..400 {
        let mut bytes = good.clone();
        for _ in 0..rng.usize(1..=8) {
            let at = rng.usize(0..bytes.len());
            bytes[at] ^= 1 << rng.u8(0..8);
        }
        fs::write(segment(dir.path()), &bytes).unwrap();
        check(dir.path());
    }
    // Damage near the footer, where the schema and offsets live.
    for _ in 0..200 {
        let mut bytes = good.clone();
        let at = rng.usize(bytes.len().saturating_sub(2048)..bytes.len());
        bytes[at] = rng.u8(..);
        fs::write(segment(dir.path()), &bytes).unwrap();
        check(dir.path());
    }
    let columns: Vec<String> = trace_format::schema::events_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for column in columns {
        fs::write(segment(dir.path()), &good).unwrap();
        drop_column(dir.path(), &column);
        check(dir.path());
    }
    assert!(
        oks > 0 && errs > 0,
        "expected both outcomes: {oks} reports, {errs} errors"
    );
}
