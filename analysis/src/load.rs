//! Reading a trace directory: `run.json`, the list of finished segments, their footers and a
//! stream of typed event batches. Every failure is an [`AnalysisError`] naming the file.
//!
//! Only one segment is open at a time and batches are a few thousand rows, so memory does not
//! depend on the trace length.
//!
//! ```no_run
//! let trace = analysis::load::Trace::open("trace".as_ref()).unwrap();
//! let mut reader = trace.reader();
//! while let Some(batch) = reader.next_batch().unwrap() {
//!     println!("{} rows", batch.rows);
//! }
//! ```

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::{
    array::{
        Array, ArrayRef, AsArray, Int32Array, RecordBatch, UInt16Array, UInt32Array, UInt64Array,
    },
    compute::{can_cast_types, cast},
    datatypes::{DataType, UInt16Type},
};
use parquet::arrow::{
    ProjectionMask,
    arrow_reader::{
        ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
        ParquetRecordBatchReaderBuilder, statistics::StatisticsConverter,
    },
};

use trace_format::{
    run::{RunInfo, RunInfoError},
    schema::{self, col},
};

use crate::{error::AnalysisError, util::Interner};

/// Rows per decoded batch: large enough to amortise the per-batch decoding work (7% faster
/// than 8192), small enough that the decoded columns stay a few MiB.
const BATCH_ROWS: usize = 32768;

pub use trace_format::names::{Domain, Event, Runtime};

/// The columns the reports read, with their required type. Columns absent from this list are
/// ignored (schema evolution adds columns).
const REQUIRED: [&str; 9] = [
    col::TS_NS,
    col::PID,
    col::TID,
    col::EVENT,
    col::FUNC,
    col::ADDR,
    col::SIZE,
    col::OLD_ADDR,
    col::RUNTIME,
];
const OPTIONAL: [&str; 23] = [
    col::DOMAIN,
    col::STACK_ID,
    col::OLD_SIZE,
    col::PROT,
    col::MAP_FLAGS,
    col::FD,
    col::ERRNO,
    col::GC_CYCLE,
    col::GC_GENERATION,
    col::HEAP_LIVE,
    col::HEAP_GOAL,
    col::COLLECTED,
    col::UNCOLLECTABLE,
    col::REASON,
    col::HEAP_INUSE,
    col::HEAP_IDLE,
    col::HEAP_RELEASED,
    col::STACK_INUSE,
    col::GC_CPU_NS,
    col::CPU_CAPACITY_NS,
    col::GOMAXPROCS,
    col::RSS_BYTES,
    col::HEAP_RSS_BYTES,
];

fn expected_type(column: &str) -> DataType {
    schema::events_schema()
        .field_with_name(column)
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null)
}

/// One finished segment whose footer was read and checked.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: PathBuf,
    pub rows: u64,
    metadata: ArrowReaderMetadata,
    /// Root indices of the known columns present in this file, and whether each is optional
    /// (an optional column that is all null in a row group is not decoded there).
    projection: Vec<(usize, bool)>,
}

impl Segment {
    /// The columns to decode for row group `group`: every required column, and the optional
    /// ones holding at least one value there according to the row group's statistics.
    /// Most optional columns (GC, syscall and Python fields) are null in most row groups, and
    /// decoding an all-null column still costs its definition levels and buffers.
    fn projection_for(&self, group: usize) -> Vec<usize> {
        let metadata = self.metadata.metadata();
        let Some(row_group) = metadata.row_groups().get(group) else {
            return self.projection.iter().map(|(i, _)| *i).collect();
        };
        let rows = row_group.num_rows().max(0) as u64;
        self.projection
            .iter()
            .filter(|(index, optional)| {
                let all_null = row_group
                    .columns()
                    .get(*index)
                    .and_then(|c| c.statistics())
                    .and_then(|s| s.null_count_opt())
                    .is_some_and(|nulls| nulls >= rows);
                !(*optional && all_null)
            })
            .map(|(i, _)| *i)
            .collect()
    }

    fn row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }
}

/// An opened trace directory.
#[derive(Debug, Clone)]
pub struct Trace {
    pub dir: PathBuf,
    pub run: RunInfo,
    pub segments: Vec<Segment>,
    /// Read only the rows of this process (`report --pid`, `compare TRACE:PID`).
    pub only_pid: Option<u32>,
}

impl Trace {
    /// Reads `run.json`, lists `events/part-*.parquet` (unfinished `.tmp` segments are skipped)
    /// and checks each segment's footer and columns.
    pub fn open(dir: &Path) -> Result<Trace, AnalysisError> {
        if !dir.is_dir() {
            return Err(AnalysisError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let run = read_run(dir)?;
        let paths = trace_format::segments::list(dir).map_err(|source| AnalysisError::Io {
            path: dir.join(schema::EVENTS_DIR),
            source,
        })?;
        if paths.is_empty() {
            return Err(AnalysisError::NoSegments {
                dir: dir.to_owned(),
            });
        }
        let segments = paths
            .into_iter()
            .map(open_segment)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Trace {
            dir: dir.to_owned(),
            run,
            segments,
            only_pid: None,
        })
    }

    /// Rows in all segments, from their footers.
    pub fn rows(&self) -> u64 {
        self.segments.iter().map(|s| s.rows).sum()
    }

    /// The smallest and largest `ts_ns`, from row-group statistics when every row group has
    /// them, else from a pass over the `ts_ns` column alone. `None` for a trace without rows.
    pub fn time_range(&self) -> Result<Option<(u64, u64)>, AnalysisError> {
        let mut range: Option<(u64, u64)> = None;
        let mut merge = |lo: u64, hi: u64| {
            range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        };
        for segment in &self.segments {
            if segment.rows == 0 {
                continue;
            }
            match statistics_range(segment) {
                Some((lo, hi)) => merge(lo, hi),
                None => {
                    if let Some((lo, hi)) = scan_ts_range(segment)? {
                        merge(lo, hi);
                    }
                }
            }
        }
        Ok(range)
    }

    /// [`Trace::time_range`], or the run's start twice for a trace without rows: the span a
    /// time axis covers.
    pub fn span(&self) -> Result<(u64, u64), AnalysisError> {
        let start = self.run.clock.monotonic_start_ns;
        Ok(self.time_range()?.unwrap_or((start, start)))
    }

    /// A reader over every event, segment after segment, in file (causal) order.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            trace: self,
            next: (0, 0),
            current: None,
            names: Names::default(),
        }
    }
}

fn read_run(dir: &Path) -> Result<RunInfo, AnalysisError> {
    RunInfo::read(dir).map_err(|e| match e {
        RunInfoError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => {
            AnalysisError::MissingRunJson {
                dir: dir.to_owned(),
                source,
            }
        }
        RunInfoError::Read { path, source } => AnalysisError::Io { path, source },
        RunInfoError::Parse { path, source } => AnalysisError::InvalidRunJson { path, source },
    })
}

/// Runs `f`, turning a panic inside the Parquet/Arrow decoders into an error: they are fed
/// untrusted bytes and a damaged file must give an error, not abort the report.
fn guard<T>(path: &Path, f: impl FnOnce() -> Result<T, AnalysisError>) -> Result<T, AnalysisError> {
    trace_format::guard::catch(f).unwrap_or_else(|panicked| {
        Err(AnalysisError::DecoderPanic {
            path: path.to_owned(),
            message: panicked.message,
        })
    })
}

fn open_segment(path: PathBuf) -> Result<Segment, AnalysisError> {
    let file = File::open(&path).map_err(|source| AnalysisError::Io {
        path: path.clone(),
        source,
    })?;
    let metadata = guard(&path, || {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|source| {
            AnalysisError::Parquet {
                path: path.clone(),
                source,
            }
        })
    })?;
    let schema = metadata.schema().clone();
    let mut projection = Vec::new();
    for (column, required) in REQUIRED
        .iter()
        .map(|c| (*c, true))
        .chain(OPTIONAL.iter().map(|c| (*c, false)))
    {
        match schema.index_of(column) {
            Ok(index) => {
                let found = schema.field(index).data_type();
                let expected = expected_type(column);
                if found != &expected && !can_cast_types(found, &expected) {
                    return Err(AnalysisError::ColumnType {
                        path,
                        column,
                        expected: expected.to_string(),
                        found: found.to_string(),
                    });
                }
                projection.push((index, !required));
            }
            Err(_) if required => return Err(AnalysisError::MissingColumn { path, column }),
            Err(_) => {}
        }
    }
    // Nested columns would make root and leaf indices differ; the events table is flat.
    if metadata.parquet_schema().num_columns() != schema.fields().len() {
        return Err(AnalysisError::ColumnType {
            path,
            column: col::TS_NS,
            expected: "a flat table".into(),
            found: "nested columns".into(),
        });
    }
    let rows = metadata.metadata().file_metadata().num_rows().max(0) as u64;
    Ok(Segment {
        path,
        rows,
        metadata,
        projection,
    })
}

fn statistics_range(segment: &Segment) -> Option<(u64, u64)> {
    let metadata = &segment.metadata;
    let converter =
        StatisticsConverter::try_new(col::TS_NS, metadata.schema(), metadata.parquet_schema())
            .ok()?;
    let groups = metadata.metadata().row_groups();
    let mins = converter.row_group_mins(groups.iter()).ok()?;
    let maxes = converter.row_group_maxes(groups.iter()).ok()?;
    let mins = mins.as_primitive_opt::<arrow::datatypes::UInt64Type>()?;
    let maxes = maxes.as_primitive_opt::<arrow::datatypes::UInt64Type>()?;
    if mins.null_count() > 0 || maxes.null_count() > 0 || mins.is_empty() {
        return None;
    }
    let lo = mins.values().iter().copied().min()?;
    let hi = maxes.values().iter().copied().max()?;
    (lo <= hi).then_some((lo, hi))
}

fn scan_ts_range(segment: &Segment) -> Result<Option<(u64, u64)>, AnalysisError> {
    let ts_index = segment
        .metadata
        .schema()
        .index_of(col::TS_NS)
        .map_err(|_| AnalysisError::MissingColumn {
            path: segment.path.clone(),
            column: col::TS_NS,
        })?;
    let mut reader = segment_reader(segment, None, &[ts_index])?;
    let mut range: Option<(u64, u64)> = None;
    while let Some(batch) = next_record_batch(&segment.path, &mut reader)? {
        let ts = typed_column(&segment.path, &batch, 0, col::TS_NS)?;
        let ts = ts.as_primitive::<arrow::datatypes::UInt64Type>();
        if let (Some(lo), Some(hi)) = (arrow::compute::min(ts), arrow::compute::max(ts)) {
            range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
    Ok(range)
}

/// A reader of `projection` over `row_group` (every row group when `None`).
fn segment_reader(
    segment: &Segment,
    row_group: Option<usize>,
    projection: &[usize],
) -> Result<ParquetRecordBatchReader, AnalysisError> {
    let path = &segment.path;
    let file = File::open(path).map_err(|source| AnalysisError::Io {
        path: path.clone(),
        source,
    })?;
    guard(path, || {
        let mask = ProjectionMask::roots(
            segment.metadata.parquet_schema(),
            projection.iter().copied(),
        );
        let builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, segment.metadata.clone());
        let builder = match row_group {
            Some(group) => builder.with_row_groups(vec![group]),
            None => builder,
        };
        builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| AnalysisError::Parquet {
                path: path.clone(),
                source,
            })
    })
}

fn next_record_batch(
    path: &Path,
    reader: &mut ParquetRecordBatchReader,
) -> Result<Option<RecordBatch>, AnalysisError> {
    guard(path, || match reader.next() {
        None => Ok(None),
        Some(Ok(batch)) => Ok(Some(batch)),
        Some(Err(source)) => Err(AnalysisError::Parquet {
            path: path.to_owned(),
            source: source.into(),
        }),
    })
}

/// Column `index` of `batch`, cast to the schema's type when a foreign writer used another one.
fn typed_column(
    path: &Path,
    batch: &RecordBatch,
    index: usize,
    column: &'static str,
) -> Result<ArrayRef, AnalysisError> {
    let array = batch.column(index);
    let expected = expected_type(column);
    if array.data_type() == &expected {
        return Ok(array.clone());
    }
    guard(path, || {
        cast(array, &expected).map_err(|source| AnalysisError::Column {
            path: path.to_owned(),
            column,
            source,
        })
    })
}

/// Strings interned across segments (each segment has its own dictionaries).
#[derive(Debug, Default)]
pub struct Names {
    pub funcs: Interner,
    pub reasons: Interner,
}

/// Streams [`EventBatch`]es over all segments.
pub struct Reader<'t> {
    trace: &'t Trace,
    /// (segment, row group) to open next.
    next: (usize, usize),
    current: Option<(usize, ParquetRecordBatchReader)>,
    names: Names,
}

impl Reader<'_> {
    /// The next batch, or `None` after the last segment.
    pub fn next_batch(&mut self) -> Result<Option<EventBatch>, AnalysisError> {
        loop {
            if self.current.is_none() {
                let (index, group) = self.next;
                let Some(segment) = self.trace.segments.get(index) else {
                    return Ok(None);
                };
                if group >= segment.row_groups() {
                    self.next = (index + 1, 0);
                    continue;
                }
                let projection = segment.projection_for(group);
                self.current = Some((index, segment_reader(segment, Some(group), &projection)?));
                self.next = (index, group + 1);
            }
            let Some((index, reader)) = self.current.as_mut() else {
                continue;
            };
            let segment = &self.trace.segments[*index];
            match next_record_batch(&segment.path, reader)? {
                Some(batch) if batch.num_rows() == 0 => {}
                Some(batch) => {
                    return EventBatch::new(&segment.path, &batch, &mut self.names).map(Some);
                }
                None => self.current = None,
            }
        }
    }

    /// Function and reason names seen so far (ids in [`EventBatch::func`] index these).
    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn into_names(self) -> Names {
        self.names
    }
}

/// A dictionary column: per-row keys plus the decoded value of every key.
#[derive(Debug)]
struct Dict<T> {
    keys: UInt16Array,
    values: Vec<T>,
}

impl<T: Copy> Dict<T> {
    fn new(
        path: &Path,
        array: ArrayRef,
        column: &'static str,
        mut decode: impl FnMut(&str) -> T,
    ) -> Result<Dict<T>, AnalysisError> {
        let Some(dict) = array.as_dictionary_opt::<UInt16Type>() else {
            return Err(AnalysisError::ColumnType {
                path: path.to_owned(),
                column,
                expected: schema::dict_utf8().to_string(),
                found: array.data_type().to_string(),
            });
        };
        let Some(strings) = dict.values().as_string_opt::<i32>() else {
            return Err(AnalysisError::ColumnType {
                path: path.to_owned(),
                column,
                expected: schema::dict_utf8().to_string(),
                found: dict.values().data_type().to_string(),
            });
        };
        let values = (0..strings.len())
            .map(|i| {
                decode(if strings.is_valid(i) {
                    strings.value(i)
                } else {
                    ""
                })
            })
            .collect();
        Ok(Dict {
            keys: dict.keys().clone(),
            values,
        })
    }

    #[inline(always)]
    fn get(&self, row: usize) -> Option<T> {
        if !is_valid(&self.keys, row) {
            return None;
        }
        self.values
            .get(usize::from(self.keys.values()[row]))
            .copied()
    }
}

/// One decoded batch of events, with typed access to every column the reports use. Optional
/// columns missing from the file read as null.
#[derive(Debug)]
pub struct EventBatch {
    pub rows: usize,
    pub ts: UInt64Array,
    pub pid: UInt32Array,
    pub tid: UInt32Array,
    pub addr: UInt64Array,
    pub size: UInt64Array,
    old_addr: UInt64Array,
    event: Dict<Event>,
    func: Dict<u16>,
    runtime: Dict<Runtime>,
    domain: Option<Dict<Option<Domain>>>,
    reason: Option<Dict<u16>>,
    pub stack_id: Option<UInt32Array>,
    pub old_size: Option<UInt64Array>,
    pub prot: Option<UInt32Array>,
    pub map_flags: Option<UInt32Array>,
    pub fd: Option<Int32Array>,
    pub errno: Option<UInt32Array>,
    pub gc_cycle: Option<UInt64Array>,
    pub gc_generation: Option<UInt32Array>,
    pub heap_live: Option<UInt64Array>,
    pub heap_goal: Option<UInt64Array>,
    pub collected: Option<UInt64Array>,
    pub uncollectable: Option<UInt64Array>,
    pub heap_inuse: Option<UInt64Array>,
    pub heap_idle: Option<UInt64Array>,
    pub heap_released: Option<UInt64Array>,
    pub stack_inuse: Option<UInt64Array>,
    pub gc_cpu_ns: Option<UInt64Array>,
    pub cpu_capacity_ns: Option<UInt64Array>,
    pub gomaxprocs: Option<UInt32Array>,
    pub rss_bytes: Option<UInt64Array>,
    pub heap_rss_bytes: Option<UInt64Array>,
}

/// Whether `array` has a value at `row`. `Array::is_valid` does the same, but LLVM left it
/// out of line, a call per row on the replay's path.
#[inline(always)]
pub fn is_valid<T: arrow::datatypes::ArrowPrimitiveType>(
    array: &arrow::array::PrimitiveArray<T>,
    row: usize,
) -> bool {
    array.nulls().is_none_or(|n| n.is_valid(row))
}

/// Value of nullable column `array` at `row`; `None` when null or absent.
#[inline]
pub fn opt<T: arrow::datatypes::ArrowPrimitiveType>(
    array: &Option<arrow::array::PrimitiveArray<T>>,
    row: usize,
) -> Option<T::Native> {
    array
        .as_ref()
        .and_then(|a| is_valid(a, row).then(|| a.value(row)))
}

impl EventBatch {
    fn new(
        path: &Path,
        batch: &RecordBatch,
        names: &mut Names,
    ) -> Result<EventBatch, AnalysisError> {
        let schema = batch.schema();
        let column = |name: &'static str| -> Result<Option<ArrayRef>, AnalysisError> {
            match schema.index_of(name) {
                Ok(index) => typed_column(path, batch, index, name).map(Some),
                Err(_) => Ok(None),
            }
        };
        let required = |name: &'static str| -> Result<ArrayRef, AnalysisError> {
            column(name)?.ok_or_else(|| AnalysisError::MissingColumn {
                path: path.to_owned(),
                column: name,
            })
        };
        fn u64s(a: ArrayRef) -> UInt64Array {
            a.as_primitive::<arrow::datatypes::UInt64Type>().clone()
        }
        fn u32s(a: ArrayRef) -> UInt32Array {
            a.as_primitive::<arrow::datatypes::UInt32Type>().clone()
        }
        let funcs = &mut names.funcs;
        let reasons = &mut names.reasons;
        Ok(EventBatch {
            rows: batch.num_rows(),
            ts: u64s(required(col::TS_NS)?),
            pid: u32s(required(col::PID)?),
            tid: u32s(required(col::TID)?),
            addr: u64s(required(col::ADDR)?),
            size: u64s(required(col::SIZE)?),
            old_addr: u64s(required(col::OLD_ADDR)?),
            event: Dict::new(path, required(col::EVENT)?, col::EVENT, Event::parse)?,
            func: Dict::new(path, required(col::FUNC)?, col::FUNC, |s| funcs.id(s))?,
            runtime: Dict::new(path, required(col::RUNTIME)?, col::RUNTIME, |s| {
                Runtime::parse(s).unwrap_or(Runtime::Native)
            })?,
            domain: column(col::DOMAIN)?
                .map(|a| Dict::new(path, a, col::DOMAIN, Domain::parse))
                .transpose()?,
            reason: column(col::REASON)?
                .map(|a| Dict::new(path, a, col::REASON, |s| reasons.id(s)))
                .transpose()?,
            stack_id: column(col::STACK_ID)?.map(u32s),
            old_size: column(col::OLD_SIZE)?.map(u64s),
            prot: column(col::PROT)?.map(u32s),
            map_flags: column(col::MAP_FLAGS)?.map(u32s),
            fd: column(col::FD)?.map(|a| a.as_primitive::<arrow::datatypes::Int32Type>().clone()),
            errno: column(col::ERRNO)?.map(u32s),
            gc_cycle: column(col::GC_CYCLE)?.map(u64s),
            gc_generation: column(col::GC_GENERATION)?.map(u32s),
            heap_live: column(col::HEAP_LIVE)?.map(u64s),
            heap_goal: column(col::HEAP_GOAL)?.map(u64s),
            collected: column(col::COLLECTED)?.map(u64s),
            uncollectable: column(col::UNCOLLECTABLE)?.map(u64s),
            heap_inuse: column(col::HEAP_INUSE)?.map(u64s),
            heap_idle: column(col::HEAP_IDLE)?.map(u64s),
            heap_released: column(col::HEAP_RELEASED)?.map(u64s),
            stack_inuse: column(col::STACK_INUSE)?.map(u64s),
            gc_cpu_ns: column(col::GC_CPU_NS)?.map(u64s),
            cpu_capacity_ns: column(col::CPU_CAPACITY_NS)?.map(u64s),
            gomaxprocs: column(col::GOMAXPROCS)?.map(u32s),
            rss_bytes: column(col::RSS_BYTES)?.map(u64s),
            heap_rss_bytes: column(col::HEAP_RSS_BYTES)?.map(u64s),
        })
    }

    #[inline]
    pub fn event(&self, row: usize) -> Event {
        self.event.get(row).unwrap_or(Event::Unknown)
    }

    /// The `old_addr` of `row`, 0 when null (rows other than realloc and mremap).
    #[inline]
    pub fn old_addr(&self, row: usize) -> u64 {
        if is_valid(&self.old_addr, row) {
            self.old_addr.values()[row]
        } else {
            0
        }
    }

    /// Interned function name id (see [`Reader::names`]).
    #[inline]
    pub fn func(&self, row: usize) -> u16 {
        self.func.get(row).unwrap_or(0)
    }

    #[inline]
    pub fn runtime(&self, row: usize) -> Runtime {
        self.runtime.get(row).unwrap_or(Runtime::Native)
    }

    #[inline]
    pub fn domain(&self, row: usize) -> Option<Domain> {
        self.domain.as_ref().and_then(|d| d.get(row)).flatten()
    }

    /// Interned stop-the-world reason id.
    #[inline]
    pub fn reason(&self, row: usize) -> Option<u16> {
        self.reason.as_ref().and_then(|d| d.get(row))
    }
}

impl Segment {
    /// The Arrow schema stored in the segment.
    pub fn schema(&self) -> Arc<arrow::datatypes::Schema> {
        self.metadata.schema().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trace_format::write::{Row, TraceWriter, WriterOptions};

    /// Check that an optional column is decoded only in the row groups where it has a value,
    /// and required columns always are.
    #[test]
    fn all_null_optional_columns_are_skipped_per_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let options = WriterOptions {
            row_group_rows: 2,
            ..WriterOptions::default()
        };
        let mut w = TraceWriter::create(dir.path(), options, vec![]).unwrap();
        let alloc = Row {
            event: Event::Alloc,
            func: "malloc",
            addr: 16,
            size: 8,
            ..Row::default()
        };
        w.push(&alloc).unwrap();
        w.push(&alloc).unwrap();
        w.push(&Row {
            event: Event::GcEnd,
            func: "gc",
            gc_cycle: Some(3),
            ..Row::default()
        })
        .unwrap();
        w.finish().unwrap();
        trace_format::run::RunInfo::default()
            .write(dir.path())
            .unwrap();
        let trace = Trace::open(dir.path()).unwrap();
        let segment = &trace.segments[0];
        let schema = segment.schema();
        let gc_cycle = schema.index_of(col::GC_CYCLE).unwrap();
        let addr = schema.index_of(col::ADDR).unwrap();
        assert!(!segment.projection_for(0).contains(&gc_cycle));
        assert!(segment.projection_for(1).contains(&gc_cycle));
        assert!(segment.projection_for(0).contains(&addr));
        let mut reader = trace.reader();
        let mut cycles = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            cycles.extend((0..batch.rows).map(|i| opt(&batch.gc_cycle, i)));
        }
        assert_eq!(cycles, vec![None, None, Some(3)]);
    }

    /// Check that every event, runtime and domain name the writer can write is read back by
    /// the loader as the same value: one set of names, tied together.
    #[test]
    fn names_round_trip_through_a_trace() {
        use strum::VariantArray as _;
        let dir = tempfile::tempdir().unwrap();
        let mut w = TraceWriter::create(dir.path(), WriterOptions::default(), vec![]).unwrap();
        let events: Vec<Event> = Event::VARIANTS
            .iter()
            .copied()
            .filter(|e| *e != Event::Unknown)
            .collect();
        let mut expected = Vec::new();
        for (i, &event) in events.iter().enumerate() {
            let runtime = Runtime::VARIANTS[i % Runtime::VARIANTS.len()];
            let domain = Domain::VARIANTS.get(i).copied();
            w.push(&Row {
                ts_ns: i as u64,
                event,
                func: "f",
                runtime,
                domain,
                ..Row::default()
            })
            .unwrap();
            expected.push((event, runtime, domain));
        }
        w.finish().unwrap();
        trace_format::run::RunInfo::default()
            .write(dir.path())
            .unwrap();
        let trace = Trace::open(dir.path()).unwrap();
        let mut reader = trace.reader();
        let mut got = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            got.extend(
                (0..batch.rows).map(|i| (batch.event(i), batch.runtime(i), batch.domain(i))),
            );
        }
        assert_eq!(got, expected);
        assert!(
            Domain::VARIANTS.len() <= events.len(),
            "every domain written"
        );
    }
}
