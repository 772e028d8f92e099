//! Many traces as one dataset: every trace exported into one Hive-style directory tree that
//! DuckDB, Polars, pyarrow and Spark read as a single table, partitioned by host and run.
//!
//! ```text
//! ROOT/
//! └── host=H/                      run.json's hostname (or ExportOptions::host)
//!     └── run=R/                   start time (UTC) and pid, e.g. 20251128T052312Z-4700
//!         ├── run.json             copied from the trace
//!         ├── events/
//!         │   ├── part-000000.parquet   the events, sorted by (pid, ts_ns, trace_row)
//!         │   └── ...
//!         ├── stacks.parquet       copied when the trace has them
//!         ├── modules.parquet
//!         ├── frames.parquet
//!         └── summary.json
//! ```
//!
//! A run directory is itself a trace directory (`run.json` + `events/`). The events have the
//! columns of [`trace_format::schema::events_schema`] plus [`TRACE_ROW`], the row's position in the
//! original trace, because sorting by time loses the causal order the tracer wrote (`ts_ns`
//! may step back a little between CPUs): `ORDER BY pid, trace_row` restores it.
//!
//! Why sorted, with small row groups: engines skip a row group when its min/max statistics
//! exclude the filter. Sorted by pid then time, each row group covers one process and a short
//! time window, so `WHERE pid = … AND ts_ns BETWEEN …` reads a few row groups instead of every
//! one. The default row group of 64 Ki rows is a few hundred KiB compressed: small enough to
//! prune time windows of a few tens of milliseconds in a busy program, large enough that the
//! footer (statistics per column per row group) stays around 1% of the file.
//!
//! Memory is bounded: rows are sorted in chunks of [`ExportOptions::sort_rows`]; a trace larger
//! than one chunk is sorted externally (sorted chunks spilled next to the output, then merged).
//!
//! The export is atomic and idempotent: everything is written into a hidden staging directory
//! beside `run=R` (ignored by the engines: its name starts with a dot) and renamed into place,
//! replacing an earlier export of the same run. Exporting the same trace twice with the same
//! options gives byte-identical files.
//!
//! ```no_run
//! use analysis::dataset::{ExportOptions, export};
//! let summary = export("trace".as_ref(), "dataset".as_ref(), &ExportOptions::default())?;
//! println!("{} rows in {}", summary.rows, summary.run_dir.display());
//! # Ok::<(), analysis::dataset::DatasetError>(())
//! ```

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap},
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow::{
    array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array, new_null_array},
    compute::{self, SortColumn},
    datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type, UInt64Type},
    error::ArrowError,
};
use parquet::{
    arrow::{
        ArrowWriter,
        arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder},
    },
    basic::{Compression, Encoding, ZstdLevel},
    errors::ParquetError,
    file::{
        metadata::{KeyValue, SortingColumn},
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};

use trace_format::{
    run::RunInfo,
    schema::{self, col, meta},
};

use crate::{error::AnalysisError, load::Trace};

/// The dataset-only column: the row's 0-based position in the original trace (segments in
/// name order, rows in file order), i.e. the causal order the probes fired in.
pub const TRACE_ROW: &str = "trace_row";

/// Side files copied next to `events/` when the trace has them. `run.json` is required (the
/// trace could not be opened without it); the Parquet ones are checked to be readable first.
const SIDE_FILES: [&str; 5] = [
    schema::RUN_JSON,
    schema::STACKS_FILE,
    schema::MODULES_FILE,
    schema::FRAMES_FILE,
    schema::SUMMARY_FILE,
];

/// Key-value metadata written into every events file of a dataset.
pub mod dataset_meta {
    pub const SORTED_BY: &str = "alloctrace.dataset.sorted_by";
    pub const HOST: &str = "alloctrace.dataset.host";
    pub const RUN: &str = "alloctrace.dataset.run";
}

/// The sort key, as written into `alloctrace.dataset.sorted_by`.
pub const SORTED_BY: &str = "pid,ts_ns,trace_row";

/// Rows decoded per batch from the trace.
const READ_BATCH_ROWS: usize = 32 * 1024;
/// Rows per batch in the merge of spilled chunks: small, as one batch per chunk is held.
const MERGE_BATCH_ROWS: usize = 8 * 1024;

/// How to export one trace.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// The `host=` partition value; default: run.json's `hostname` (`unknown` when empty).
    pub host: Option<String>,
    /// The `run=` partition value; default: [`default_run_id`].
    pub run: Option<String>,
    /// Rows per Parquet row group (the unit engines skip using statistics).
    pub row_group_rows: usize,
    /// Rows per events file, rounded down to whole row groups.
    pub file_rows: usize,
    /// Rows sorted in memory at once; larger traces are sorted externally. About 200 bytes of
    /// memory per row are needed while sorting.
    pub sort_rows: usize,
    pub zstd_level: i32,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            host: None,
            run: None,
            row_group_rows: 64 * 1024,
            file_rows: 4 << 20,
            sort_rows: 1 << 20,
            zstd_level: 3,
        }
    }
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatasetSummary {
    /// `ROOT/host=H/run=R`.
    pub run_dir: PathBuf,
    pub host: String,
    pub run: String,
    pub rows: u64,
    /// Events files, relative to `run_dir`.
    pub files: Vec<String>,
    pub row_groups: u64,
    /// Distinct pids, ascending.
    pub pids: Vec<u32>,
    /// Smallest and largest `ts_ns` (None without rows).
    pub ts_range: Option<(u64, u64)>,
    /// Sorted chunks spilled to disk (0: the trace was sorted in memory).
    pub spilled_chunks: usize,
    /// Side files copied next to `events/`.
    pub side_files: Vec<String>,
    /// Columns of the trace this version does not know, left out of the dataset.
    pub dropped_columns: Vec<String>,
    /// An earlier export of the same run was replaced.
    pub replaced: bool,
}

/// Exporting a trace into a dataset failed. Each message is one line naming the file at
/// fault; the cause is its `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The trace cannot be opened: not a directory, no or damaged run.json, no segments, a
    /// damaged segment footer, a missing column.
    #[error(transparent)]
    Trace(#[from] AnalysisError),
    #[error(
        "`{value}` cannot be a {key}= partition value: use letters, digits, '.', '_' and '-', not starting with '.' or '_'"
    )]
    InvalidPartition { key: &'static str, value: String },
    #[error("invalid export options: {0}")]
    InvalidOptions(&'static str),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a readable Parquet file (empty, truncated or corrupt)", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("{} cannot be decoded (corrupt data)", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
    #[error("{}: the Parquet decoder failed on malformed data: {message}", path.display())]
    DecoderPanic { path: PathBuf, message: String },
    #[error("{}: column `{column}` does not fit the events schema", path.display())]
    Column {
        path: PathBuf,
        column: String,
        #[source]
        source: ArrowError,
    },
    #[error("{}: its footers announce {footer} rows but {decoded} were decoded", dir.display())]
    RowCount {
        dir: PathBuf,
        footer: u64,
        decoded: u64,
    },
    #[error("cannot encode {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("cannot sort the events of {}", dir.display())]
    Sort {
        dir: PathBuf,
        #[source]
        source: ArrowError,
    },
}

static DATASET_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields: Vec<Arc<Field>> = schema::events_schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(TRACE_ROW, DataType::UInt64, false)));
    Arc::new(Schema::new(fields))
});

/// The schema of a dataset's `events/*.parquet`: the trace's events columns plus
/// [`TRACE_ROW`].
pub fn events_schema() -> SchemaRef {
    DATASET_SCHEMA.clone()
}

/// `ROOT/host=H/run=R`.
pub fn run_dir(root: &Path, host: &str, run: &str) -> PathBuf {
    root.join(format!("host={host}")).join(format!("run={run}"))
}

/// run.json's hostname made safe for a path (other characters become `-`); `unknown` when
/// empty.
pub fn default_host(run: &RunInfo) -> String {
    let cleaned: String = run
        .hostname
        .chars()
        .map(|c| if allowed_char(c) { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '_']);
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// The trace's start (UTC, to the second) and its first pid: `20251128T052312Z-4700`. Without
/// a wall-clock start in run.json, the monotonic one: `mono1000000000-4700`.
pub fn default_run_id(run: &RunInfo) -> String {
    let pid = run.pids.first().copied().unwrap_or(0);
    if run.clock.realtime_start_ns > 0 {
        format!("{}-{pid}", utc_compact(run.clock.realtime_start_ns))
    } else {
        format!("mono{}-{pid}", run.clock.monotonic_start_ns)
    }
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks a partition value given by the caller (`host=`, `run=`). Engines ignore directories
/// starting with `.` or `_`, and `/`, `=` or spaces would break the Hive layout.
fn check_partition(key: &'static str, value: &str) -> Result<(), DatasetError> {
    let ok = !value.is_empty()
        && value.chars().all(allowed_char)
        && !value.starts_with(['.', '_'])
        && value != ".."
        && value.len() <= 200;
    if ok {
        Ok(())
    } else {
        Err(DatasetError::InvalidPartition {
            key,
            value: value.to_owned(),
        })
    }
}

/// `YYYYMMDDTHHMMSSZ` of a CLOCK_REALTIME value: ISO 8601's basic format, which has no `:`
/// (not allowed in paths on every file system).
fn utc_compact(realtime_ns: u64) -> String {
    let secs = realtime_ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level
/// Date Algorithms", `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// Runs `f`, turning a panic in the Parquet/Arrow decoders into an error: they read untrusted
/// bytes, and a damaged trace must give an error, not abort the export.
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, DatasetError>) -> Result<T, DatasetError> {
    trace_format::guard::catch(f).unwrap_or_else(|panicked| {
        Err(DatasetError::DecoderPanic {
            path: path.to_owned(),
            message: panicked.message,
        })
    })
}

/// A Parquet reader over `path`, with its footer read.
fn open_parquet(path: &Path, batch_rows: usize) -> Result<ParquetRecordBatchReader, DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Read {
        path: path.to_owned(),
        source,
    })?;
    guard(path, || {
        ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(batch_rows).build())
            .map_err(|source| DatasetError::Parquet {
                path: path.to_owned(),
                source,
            })
    })
}

/// The next batch of `reader`, with decoder failures (errors and panics) as errors naming
/// `path`.
fn next_batch(
    path: &Path,
    reader: &mut ParquetRecordBatchReader,
) -> Result<Option<RecordBatch>, DatasetError> {
    guard(path, || {
        reader
            .next()
            .transpose()
            .map_err(|source| DatasetError::Decode {
                path: path.to_owned(),
                source,
            })
    })
}

/// The trace's rows, segment after segment, converted to [`events_schema`].
struct Source<'a> {
    trace: &'a Trace,
    segment: usize,
    reader: Option<ParquetRecordBatchReader>,
    next_row: u64,
    dropped: BTreeSet<String>,
}

impl Source<'_> {
    fn next(&mut self) -> Result<Option<RecordBatch>, DatasetError> {
        loop {
            let Some(segment) = self.trace.segments.get(self.segment) else {
                return Ok(None);
            };
            let reader = match &mut self.reader {
                Some(reader) => reader,
                None => self
                    .reader
                    .insert(open_parquet(&segment.path, READ_BATCH_ROWS)?),
            };
            match next_batch(&segment.path, reader)? {
                Some(batch) if batch.num_rows() == 0 => {}
                Some(batch) => return self.convert(&batch, &segment.path).map(Some),
                None => {
                    self.reader = None;
                    self.segment += 1;
                }
            }
        }
    }

    /// Takes the known columns (cast to their schema type where an older or newer writer
    /// used another), fills absent optional ones with nulls, and numbers the rows. A batch
    /// that already has `trace_row` (a dataset run exported again) keeps it, so the original
    /// causal order survives.
    fn convert(&mut self, batch: &RecordBatch, path: &Path) -> Result<RecordBatch, DatasetError> {
        let rows = batch.num_rows();
        let target = events_schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            let name = field.name();
            let column = match batch.column_by_name(name) {
                Some(c) if c.data_type() == field.data_type() => c.clone(),
                Some(c) => {
                    compute::cast(c, field.data_type()).map_err(|source| DatasetError::Column {
                        path: path.to_owned(),
                        column: name.clone(),
                        source,
                    })?
                }
                None if name == TRACE_ROW => {
                    let start = self.next_row;
                    Arc::new(UInt64Array::from_iter_values(start..start + rows as u64))
                }
                None => new_null_array(field.data_type(), rows),
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(DatasetError::Column {
                    path: path.to_owned(),
                    column: name.clone(),
                    source: ArrowError::InvalidArgumentError(format!(
                        "{} nulls in a non-nullable column",
                        column.null_count()
                    )),
                });
            }
            columns.push(column);
        }
        for field in batch.schema().fields() {
            if target.field_with_name(field.name()).is_err() {
                self.dropped.insert(field.name().clone());
            }
        }
        self.next_row += rows as u64;
        RecordBatch::try_new(target, columns).map_err(|source| DatasetError::Column {
            path: path.to_owned(),
            column: String::new(),
            source,
        })
    }
}

/// `batch` sorted by (pid, ts_ns, trace_row).
fn sort_batch(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let key = |name: &str| -> Result<SortColumn, ArrowError> {
        let values = batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?;
        Ok(SortColumn {
            values: values.clone(),
            options: None,
        })
    };
    let keys = [key(col::PID)?, key(col::TS_NS)?, key(TRACE_ROW)?];
    let indices = compute::lexsort_to_indices(&keys, None)?;
    compute::take_record_batch(batch, &indices)
}

/// The sort key of row `row`.
type Key = (u32, u64, u64);

/// Typed views of the key columns of a batch.
struct KeyColumns {
    pid: arrow::array::UInt32Array,
    ts: UInt64Array,
    trace_row: UInt64Array,
}

impl KeyColumns {
    fn of(batch: &RecordBatch) -> Option<KeyColumns> {
        let pid = batch
            .column_by_name(col::PID)?
            .as_primitive_opt::<UInt32Type>()?;
        let ts = batch
            .column_by_name(col::TS_NS)?
            .as_primitive_opt::<UInt64Type>()?;
        let trace_row = batch
            .column_by_name(TRACE_ROW)?
            .as_primitive_opt::<UInt64Type>()?;
        Some(KeyColumns {
            pid: pid.clone(),
            ts: ts.clone(),
            trace_row: trace_row.clone(),
        })
    }

    fn key(&self, row: usize) -> Key {
        (
            self.pid.value(row),
            self.ts.value(row),
            self.trace_row.value(row),
        )
    }
}

/// The events file being written.
struct OpenFile {
    writer: ArrowWriter<File>,
    handle: File,
    path: PathBuf,
    rows: usize,
}

/// Writes the events files of a run, rolling to a new file every `file_rows` rows.
struct EventsWriter {
    dir: PathBuf,
    properties: WriterProperties,
    file_rows: usize,
    open: Option<OpenFile>,
    files: Vec<String>,
    rows: u64,
    row_groups: u64,
    pids: BTreeSet<u32>,
    ts_range: Option<(u64, u64)>,
}

impl EventsWriter {
    fn new(dir: PathBuf, properties: WriterProperties, file_rows: usize) -> Self {
        EventsWriter {
            dir,
            properties,
            file_rows,
            open: None,
            files: Vec::new(),
            rows: 0,
            row_groups: 0,
            pids: BTreeSet::new(),
            ts_range: None,
        }
    }

    fn open_file(&mut self) -> Result<(), DatasetError> {
        let name = schema::segment_file_name(self.files.len() as u32);
        let path = self.dir.join(&name);
        let file = File::create(&path).map_err(|source| DatasetError::Write {
            path: path.clone(),
            source,
        })?;
        // A second handle to sync the file once the writer has closed it.
        let handle = file.try_clone().map_err(|source| DatasetError::Write {
            path: path.clone(),
            source,
        })?;
        let writer = ArrowWriter::try_new(file, events_schema(), Some(self.properties.clone()))
            .map_err(|source| DatasetError::Encode {
                path: path.clone(),
                source,
            })?;
        self.files.push(format!("{}/{name}", schema::EVENTS_DIR));
        self.open = Some(OpenFile {
            writer,
            handle,
            path,
            rows: 0,
        });
        Ok(())
    }

    /// Appends sorted rows.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), DatasetError> {
        if let Some(keys) = KeyColumns::of(batch) {
            for row in 0..batch.num_rows() {
                let (pid, ts, _) = keys.key(row);
                self.pids.insert(pid);
                self.ts_range = Some(
                    self.ts_range
                        .map_or((ts, ts), |(lo, hi)| (lo.min(ts), hi.max(ts))),
                );
            }
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self
                .open
                .as_ref()
                .is_none_or(|open| open.rows >= self.file_rows)
            {
                self.close_file()?;
                self.open_file()?;
            }
            let Some(open) = self.open.as_mut() else {
                break;
            };
            let take = (self.file_rows - open.rows).min(batch.num_rows() - offset);
            open.writer
                .write(&batch.slice(offset, take))
                .map_err(|source| DatasetError::Encode {
                    path: open.path.clone(),
                    source,
                })?;
            open.rows += take;
            offset += take;
            self.rows += take as u64;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<(), DatasetError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let metadata = open.writer.close().map_err(|source| DatasetError::Encode {
            path: open.path.clone(),
            source,
        })?;
        self.row_groups += metadata.num_row_groups() as u64;
        open.handle
            .sync_all()
            .map_err(|source| DatasetError::Write {
                path: open.path,
                source,
            })
    }

    /// Closes the last file; a run without rows still gets one (empty) file, so every run has
    /// the schema on disk and globs over the dataset never see a run without events.
    fn finish(mut self) -> Result<EventsWriter, DatasetError> {
        if self.files.is_empty() {
            self.open_file()?;
        }
        self.close_file()?;
        Ok(self)
    }
}

/// A sorted chunk spilled to disk, read back batch by batch during the merge.
struct Chunk {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    keys: KeyColumns,
    row: usize,
    /// Index of `batch` in the merge's list of source batches.
    source: usize,
}

impl Chunk {
    fn open(path: PathBuf) -> Result<Option<Chunk>, DatasetError> {
        let mut reader = open_parquet(&path, MERGE_BATCH_ROWS)?;
        let Some((batch, keys)) = Self::read(&path, &mut reader)? else {
            return Ok(None);
        };
        Ok(Some(Chunk {
            path,
            reader,
            batch,
            keys,
            row: 0,
            source: 0,
        }))
    }

    fn read(
        path: &Path,
        reader: &mut ParquetRecordBatchReader,
    ) -> Result<Option<(RecordBatch, KeyColumns)>, DatasetError> {
        while let Some(batch) = next_batch(path, reader)? {
            if batch.num_rows() == 0 {
                continue;
            }
            let keys = KeyColumns::of(&batch).ok_or_else(|| DatasetError::Column {
                path: path.to_owned(),
                column: TRACE_ROW.to_owned(),
                source: ArrowError::SchemaError("sort key columns missing".into()),
            })?;
            return Ok(Some((batch, keys)));
        }
        Ok(None)
    }

    fn key(&self) -> Key {
        self.keys.key(self.row)
    }
}

/// Merges sorted spilled chunks into `out` (a k-way merge on the sort key; one batch of each
/// chunk in memory).
fn merge(paths: Vec<PathBuf>, out: &mut EventsWriter, dir: &Path) -> Result<(), DatasetError> {
    let mut chunks = Vec::new();
    for path in paths {
        if let Some(chunk) = Chunk::open(path)? {
            chunks.push(chunk);
        }
    }
    let mut sources: Vec<RecordBatch> = Vec::new();
    let mut heap = BinaryHeap::new();
    for (i, chunk) in chunks.iter_mut().enumerate() {
        chunk.source = sources.len();
        sources.push(chunk.batch.clone());
        heap.push(Reverse((chunk.key(), i)));
    }
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(MERGE_BATCH_ROWS);
    let sort_error = |source| DatasetError::Sort {
        dir: dir.to_owned(),
        source,
    };
    while let Some(Reverse((_, i))) = heap.pop() {
        let chunk = &mut chunks[i];
        picks.push((chunk.source, chunk.row));
        chunk.row += 1;
        let mut more = chunk.row < chunk.batch.num_rows();
        if !more && let Some((batch, keys)) = Chunk::read(&chunk.path, &mut chunk.reader)? {
            // The exhausted batch stays in `sources` until the picks pointing into it are
            // written.
            chunk.source = sources.len();
            sources.push(batch.clone());
            (chunk.batch, chunk.keys, chunk.row) = (batch, keys, 0);
            more = true;
        }
        if more {
            heap.push(Reverse((chunk.key(), i)));
        }
        if picks.len() >= MERGE_BATCH_ROWS {
            let refs: Vec<&RecordBatch> = sources.iter().collect();
            let batch = compute::interleave_record_batch(&refs, &picks).map_err(sort_error)?;
            out.write(&batch)?;
            picks.clear();
            sources.clear();
            for chunk in &mut chunks {
                chunk.source = sources.len();
                sources.push(chunk.batch.clone());
            }
        }
    }
    if !picks.is_empty() {
        let refs: Vec<&RecordBatch> = sources.iter().collect();
        let batch = compute::interleave_record_batch(&refs, &picks).map_err(sort_error)?;
        out.write(&batch)?;
    }
    Ok(())
}

/// The staging directory: removed on drop unless it was published.
struct Staging {
    path: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: a failed export must not leave half a run behind; the name starts
        // with a dot, so a leftover is invisible to readers anyway.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A name unique to this export within the process and across processes.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn create_dir(path: &Path) -> Result<(), DatasetError> {
    fs::create_dir_all(path).map_err(|source| DatasetError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The Parquet settings of the events files. Statistics per page as well as per row group:
/// DuckDB, Polars and Spark prune with row-group statistics, DataFusion and arrow-rs also use
/// the page index.
fn properties(
    run: &RunInfo,
    host: &str,
    run_id: &str,
    options: &ExportOptions,
) -> WriterProperties {
    let level = ZstdLevel::try_new(options.zstd_level).unwrap_or_default();
    let position = |name: &str| {
        events_schema()
            .index_of(name)
            .map_or(0, |i| i32::try_from(i).unwrap_or(0))
    };
    let sorting = [col::PID, col::TS_NS, TRACE_ROW]
        .into_iter()
        .map(|name| SortingColumn {
            column_idx: position(name),
            descending: false,
            nulls_first: false,
        })
        .collect();
    let mut metadata = vec![
        (meta::SCHEMA_VERSION, schema::SCHEMA_VERSION.to_string()),
        (meta::TOOL_VERSION, run.tool.version.clone()),
        (
            meta::PID,
            run.pids.first().map(u32::to_string).unwrap_or_default(),
        ),
        (meta::EXE, run.exe.clone()),
        (meta::ARCH, run.arch.clone()),
        (
            meta::MONOTONIC_START_NS,
            run.clock.monotonic_start_ns.to_string(),
        ),
        (
            meta::REALTIME_START_NS,
            run.clock.realtime_start_ns.to_string(),
        ),
        (dataset_meta::SORTED_BY, SORTED_BY.to_owned()),
        (dataset_meta::HOST, host.to_owned()),
        (dataset_meta::RUN, run_id.to_owned()),
    ];
    metadata.retain(|(_, v)| !v.is_empty());
    let builder =
        [col::TS_NS, TRACE_ROW]
            .into_iter()
            .fold(WriterProperties::builder(), |b, name| {
                // Sorted timestamps and row numbers: deltas pack into a few bits each.
                let path = ColumnPath::from(name);
                b.set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED)
            });
    builder
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_size(options.row_group_rows)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .set_key_value_metadata(Some(
            metadata
                .into_iter()
                .map(|(k, v)| KeyValue::new(k.to_owned(), v))
                .collect(),
        ))
        .build()
}

/// Spill files: fast compression, no statistics; they live only during the export.
fn spill_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

fn write_spill(path: &Path, batch: &RecordBatch) -> Result<(), DatasetError> {
    let encode = |source| DatasetError::Encode {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(|source| DatasetError::Write {
        path: path.to_owned(),
        source,
    })?;
    let mut writer =
        ArrowWriter::try_new(file, events_schema(), Some(spill_properties())).map_err(encode)?;
    // Written in slices so the encoder's buffers stay small.
    let mut offset = 0;
    while offset < batch.num_rows() {
        let take = MERGE_BATCH_ROWS.min(batch.num_rows() - offset);
        writer.write(&batch.slice(offset, take)).map_err(encode)?;
        offset += take;
    }
    writer.close().map_err(encode)?;
    Ok(())
}

/// Copies the side files the trace has into `dest`, checking Parquet ones are readable.
fn copy_side_files(trace_dir: &Path, dest: &Path) -> Result<Vec<String>, DatasetError> {
    let mut copied = Vec::new();
    for name in SIDE_FILES {
        let from = trace_dir.join(name);
        if !from.is_file() {
            continue;
        }
        if name.ends_with(".parquet") {
            open_parquet(&from, 1)?;
        }
        let to = dest.join(name);
        fs::copy(&from, &to).map_err(|source| DatasetError::Write { path: to, source })?;
        copied.push(name.to_owned());
    }
    Ok(copied)
}

/// Moves `staging` to `final_dir`, replacing an earlier export there. Returns whether one was
/// replaced.
fn publish(staging: &Staging, final_dir: &Path) -> Result<bool, DatasetError> {
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|source| DatasetError::Write {
            path: to.to_owned(),
            source,
        })
    };
    if fs::symlink_metadata(final_dir).is_err() {
        rename(&staging.path, final_dir)?;
        return Ok(false);
    }
    let parent = final_dir.parent().unwrap_or(Path::new("."));
    let name = final_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let old = parent.join(format!(".{name}.old-{}", unique_suffix()));
    rename(final_dir, &old)?;
    if let Err(err) = rename(&staging.path, final_dir) {
        // Put the earlier export back rather than leave no run at all.
        let _ = fs::rename(&old, final_dir);
        return Err(err);
    }
    fs::remove_dir_all(&old).map_err(|source| DatasetError::Write { path: old, source })?;
    Ok(true)
}

/// Exports the trace in `trace_dir` into the dataset at `root` (created if needed) as
/// `root/host=H/run=R`: events sorted by (pid, ts_ns, trace_row) in row groups of
/// `options.row_group_rows` with statistics, plus the trace's side files. See the module
/// documentation for the layout and `docs/datasets.md` for queries.
pub fn export(
    trace_dir: &Path,
    root: &Path,
    options: &ExportOptions,
) -> Result<DatasetSummary, DatasetError> {
    if options.row_group_rows == 0 {
        return Err(DatasetError::InvalidOptions(
            "row_group_rows must be at least 1",
        ));
    }
    if options.sort_rows == 0 {
        return Err(DatasetError::InvalidOptions("sort_rows must be at least 1"));
    }
    let trace = Trace::open(trace_dir)?;
    let host = match &options.host {
        Some(host) => {
            check_partition("host", host)?;
            host.clone()
        }
        None => default_host(&trace.run),
    };
    let run_id = match &options.run {
        Some(run) => {
            check_partition("run", run)?;
            run.clone()
        }
        None => {
            let id = default_run_id(&trace.run);
            check_partition("run", &id)?;
            id
        }
    };
    let final_dir = run_dir(root, &host, &run_id);
    let host_dir = final_dir.parent().unwrap_or(root).to_owned();
    create_dir(&host_dir)?;
    let staging = Staging {
        path: host_dir.join(format!(".run={run_id}.tmp-{}", unique_suffix())),
    };
    let events_dir = staging.path.join(schema::EVENTS_DIR);
    create_dir(&events_dir)?;

    // Whole row groups per file, so only a file's last row group can be short.
    let file_rows = options.file_rows.max(options.row_group_rows) / options.row_group_rows
        * options.row_group_rows;
    let mut out = EventsWriter::new(
        events_dir,
        properties(&trace.run, &host, &run_id, options),
        file_rows,
    );
    let mut source = Source {
        trace: &trace,
        segment: 0,
        reader: None,
        next_row: 0,
        dropped: BTreeSet::new(),
    };
    let sort_error = |source| DatasetError::Sort {
        dir: trace_dir.to_owned(),
        source,
    };
    let schema = events_schema();
    let mut buffer: Vec<RecordBatch> = Vec::new();
    let mut buffered = 0usize;
    let mut spills: Vec<PathBuf> = Vec::new();
    let spill_dir = staging.path.join("_spill");
    // The part of the last batch read that did not fit in the buffer.
    let mut rest: Option<RecordBatch> = None;
    loop {
        let batch = match rest.take() {
            Some(batch) => Some(batch),
            None => source.next()?,
        };
        let done = batch.is_none();
        if let Some(batch) = batch {
            let room = options.sort_rows - buffered;
            if batch.num_rows() > room {
                rest = Some(batch.slice(room, batch.num_rows() - room));
                buffer.push(batch.slice(0, room));
                buffered += room;
            } else {
                buffered += batch.num_rows();
                buffer.push(batch);
            }
        }
        // Spill a full buffer, or what is left once something was spilled; a trace that fits
        // in one buffer is sorted and written without touching the disk twice.
        if buffered >= options.sort_rows || (done && !spills.is_empty() && buffered > 0) {
            let chunk = compute::concat_batches(&schema, &buffer).map_err(sort_error)?;
            buffer.clear();
            buffered = 0;
            let sorted = sort_batch(&chunk).map_err(sort_error)?;
            drop(chunk);
            if spills.is_empty() {
                create_dir(&spill_dir)?;
            }
            let path = spill_dir.join(format!("chunk-{:06}.parquet", spills.len()));
            write_spill(&path, &sorted)?;
            spills.push(path);
        }
        if done {
            break;
        }
    }
    let spilled_chunks = spills.len();
    if spills.is_empty() {
        let chunk = compute::concat_batches(&schema, &buffer).map_err(sort_error)?;
        buffer.clear();
        let sorted = sort_batch(&chunk).map_err(sort_error)?;
        drop(chunk);
        // Handed over in slices: the encoder copies what it is given into its own buffers.
        let mut offset = 0;
        while offset < sorted.num_rows() {
            let take = READ_BATCH_ROWS.min(sorted.num_rows() - offset);
            out.write(&sorted.slice(offset, take))?;
            offset += take;
        }
    } else {
        merge(spills, &mut out, trace_dir)?;
        fs::remove_dir_all(&spill_dir).map_err(|source| DatasetError::Write {
            path: spill_dir.clone(),
            source,
        })?;
    }
    let out = out.finish()?;
    let footer = trace.rows();
    if out.rows != footer || source.next_row != footer {
        return Err(DatasetError::RowCount {
            dir: trace_dir.to_owned(),
            footer,
            decoded: source.next_row,
        });
    }
    let side_files = copy_side_files(trace_dir, &staging.path)?;
    let replaced = publish(&staging, &final_dir)?;
    Ok(DatasetSummary {
        run_dir: final_dir,
        host,
        run: run_id,
        rows: out.rows,
        files: out.files,
        row_groups: out.row_groups,
        pids: out.pids.into_iter().collect(),
        ts_range: out.ts_range,
        spilled_chunks,
        side_files,
        dropped_columns: source.dropped.into_iter().collect(),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that the compact UTC stamp matches known instants, including a leap day.
    #[test]
    fn utc_stamps() {
        assert_eq!(utc_compact(0), "19700101T000000Z");
        assert_eq!(utc_compact(1_700_000_000_000_000_000), "20231114T221320Z");
        // 2024-02-29T23:59:59Z = 1709251199 s.
        assert_eq!(utc_compact(1_709_251_199_999_999_999), "20240229T235959Z");
        assert_eq!(utc_compact(951_782_400_000_000_000), "20000229T000000Z");
    }

    /// Check that partition values that would break the layout or be hidden are refused and
    /// hostnames are cleaned rather than refused.
    #[test]
    fn partition_values() {
        for bad in ["", ".hidden", "_tmp", "a/b", "a=b", "a b", ".."] {
            assert!(check_partition("run", bad).is_err(), "{bad:?}");
        }
        for good in ["host-1.example", "20231114T221320Z-42", "A_b"] {
            assert!(check_partition("run", good).is_ok(), "{good:?}");
        }
        let run = |hostname: &str| RunInfo {
            hostname: hostname.into(),
            ..RunInfo::default()
        };
        assert_eq!(default_host(&run("box/1 a")), "box-1-a");
        assert_eq!(default_host(&run("")), "unknown");
        assert_eq!(default_host(&run("..")), "unknown");
    }
}
