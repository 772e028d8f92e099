//! Writing traces: rows → Arrow batches → Parquet segments.
//!
//! `alloctrace record` writes through this, and so do tests and benchmarks that synthesise
//! traces, so every trace on disk has exactly the [`crate::schema`] layout.
//!
//! Segments are written as `part-NNNNNN.parquet.tmp` and renamed when closed: a reader (or a
//! crash) never sees a half-written segment under its final name, and a killed writer loses at
//! most the open segment.
//!
//! ```no_run
//! use trace_format::{names::Event, write::{Row, TraceWriter, WriterOptions}};
//! let mut w = TraceWriter::create("trace".as_ref(), WriterOptions::default(), vec![]).unwrap();
//! w.push(&Row { ts_ns: 1, event: Event::Alloc, func: "malloc", addr: 0x1000, size: 16, ..Row::default() }).unwrap();
//! let segments = w.finish().unwrap();
//! ```

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use arrow::{
    array::{
        ArrayRef, DictionaryArray, Int32Array, PrimitiveArray, StringArray, UInt16Array,
        UInt32Array, UInt64Array,
    },
    datatypes::{ArrowPrimitiveType, UInt16Type},
    error::ArrowError,
    record_batch::RecordBatch,
};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    errors::ParquetError,
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};

use crate::{
    guard,
    names::{Domain, Event, Runtime},
    schema::{self, col},
};

/// One event, as the writer takes it. Fields mirror the columns of [`schema::events_schema`];
/// `None` is a null.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub event: Event,
    pub func: &'a str,
    pub addr: u64,
    pub size: u64,
    pub old_addr: Option<u64>,
    pub align: Option<u64>,
    pub runtime: Runtime,
    pub domain: Option<Domain>,
    pub stack_id: Option<u32>,
    pub old_size: Option<u64>,
    pub prot: Option<u32>,
    pub map_flags: Option<u32>,
    pub fd: Option<i32>,
    pub errno: Option<u32>,
    pub gc_cycle: Option<u64>,
    pub gc_generation: Option<u32>,
    pub heap_live: Option<u64>,
    pub heap_goal: Option<u64>,
    pub collected: Option<u64>,
    pub uncollectable: Option<u64>,
    pub reason: Option<&'a str>,
    pub go_type: Option<&'a str>,
    /// Go's own heap and GC CPU accounting, on `gc_end` rows.
    pub go_cycle: GoCycle,
    /// `rss` rows: resident set size and resident heap bytes.
    pub rss_bytes: Option<u64>,
    pub heap_rss_bytes: Option<u64>,
}

/// The columns a Go `gc_end` row carries from the runtime's own accounting; `None` where a
/// value was not read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoCycle {
    pub heap_inuse: Option<u64>,
    pub heap_idle: Option<u64>,
    pub heap_released: Option<u64>,
    pub stack_inuse: Option<u64>,
    /// GC CPU time since the process started, as gctrace counts it (idle marking left out).
    pub gc_cpu_ns: Option<u64>,
    /// Elapsed time × GOMAXPROCS since the process started, as the runtime integrates it.
    pub cpu_capacity_ns: Option<u64>,
    pub gomaxprocs: Option<u32>,
}

/// The default row is a native `alloc` of 0 bytes at 0 with every optional column null.
impl Default for Row<'_> {
    fn default() -> Self {
        Row {
            ts_ns: 0,
            pid: 0,
            tid: 0,
            event: Event::Alloc,
            func: "",
            addr: 0,
            size: 0,
            old_addr: None,
            align: None,
            runtime: Runtime::Native,
            domain: None,
            stack_id: None,
            old_size: None,
            prot: None,
            map_flags: None,
            fd: None,
            errno: None,
            gc_cycle: None,
            gc_generation: None,
            heap_live: None,
            heap_goal: None,
            collected: None,
            uncollectable: None,
            reason: None,
            go_type: None,
            go_cycle: GoCycle::default(),
            rss_bytes: None,
            heap_rss_bytes: None,
        }
    }
}

/// When segments roll and how they are encoded.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Rows per Arrow batch handed to the Parquet encoder.
    pub batch_rows: usize,
    /// Close the open segment once it holds this many bytes (encoded).
    pub segment_max_bytes: usize,
    /// ... or once it has been open this long.
    pub segment_max_duration: Duration,
    pub zstd_level: i32,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            batch_rows: 64 * 1024,
            segment_max_bytes: 64 << 20,
            segment_max_duration: Duration::from_secs(10),
            zstd_level: 3,
            row_group_rows: 1 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot finish segment {}", path.display())]
    Close {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("encoding Parquet")]
    Parquet(#[from] ParquetError),
    #[error("building Arrow batch")]
    Arrow(#[from] ArrowError),
    #[error("more than 65535 distinct values in column {column}")]
    DictionaryFull { column: &'static str },
    #[error("the Parquet encoder failed: {0}")]
    EncoderPanic(#[from] guard::Panicked),
}

/// A growing string dictionary for one column of the open segment.
#[derive(Default)]
struct Dict {
    index: rustc_hash::FxHashMap<String, u16>,
    values: Vec<String>,
    /// The last value looked up: consecutive rows often repeat it.
    last: Option<(u16, String)>,
}

impl Dict {
    fn key(&mut self, value: &str, column: &'static str) -> Result<u16, WriteError> {
        if let Some((k, last)) = &self.last
            && last == value
        {
            return Ok(*k);
        }
        let k = self.lookup(value, column)?;
        match &mut self.last {
            Some((last_key, last)) => {
                *last_key = k;
                last.clear();
                last.push_str(value);
            }
            None => self.last = Some((k, value.to_owned())),
        }
        Ok(k)
    }

    fn lookup(&mut self, value: &str, column: &'static str) -> Result<u16, WriteError> {
        if let Some(&k) = self.index.get(value) {
            return Ok(k);
        }
        let k =
            u16::try_from(self.values.len()).map_err(|_| WriteError::DictionaryFull { column })?;
        self.index.insert(value.to_owned(), k);
        self.values.push(value.to_owned());
        Ok(k)
    }

    fn array(&self, keys: Vec<Option<u16>>) -> Result<ArrayRef, ArrowError> {
        let values: ArrayRef = Arc::new(StringArray::from_iter_values(&self.values));
        let keys = UInt16Array::from(keys);
        Ok(Arc::new(DictionaryArray::<UInt16Type>::try_new(
            keys, values,
        )?))
    }
}

/// Column buffers of the batch being filled.
#[derive(Default)]
struct Columns {
    ts_ns: Vec<u64>,
    pid: Vec<u32>,
    tid: Vec<u32>,
    event: Vec<Option<u16>>,
    func: Vec<Option<u16>>,
    addr: Vec<u64>,
    size: Vec<u64>,
    old_addr: Vec<Option<u64>>,
    align: Vec<Option<u64>>,
    runtime: Vec<Option<u16>>,
    domain: Vec<Option<u16>>,
    stack_id: Vec<Option<u32>>,
    old_size: Vec<Option<u64>>,
    prot: Vec<Option<u32>>,
    map_flags: Vec<Option<u32>>,
    fd: Vec<Option<i32>>,
    errno: Vec<Option<u32>>,
    gc_cycle: Vec<Option<u64>>,
    gc_generation: Vec<Option<u32>>,
    heap_live: Vec<Option<u64>>,
    heap_goal: Vec<Option<u64>>,
    collected: Vec<Option<u64>>,
    uncollectable: Vec<Option<u64>>,
    reason: Vec<Option<u16>>,
    go_type: Vec<Option<u16>>,
    heap_inuse: Vec<Option<u64>>,
    heap_idle: Vec<Option<u64>>,
    heap_released: Vec<Option<u64>>,
    stack_inuse: Vec<Option<u64>>,
    gc_cpu_ns: Vec<Option<u64>>,
    cpu_capacity_ns: Vec<Option<u64>>,
    gomaxprocs: Vec<Option<u32>>,
    rss_bytes: Vec<Option<u64>>,
    heap_rss_bytes: Vec<Option<u64>>,
}

/// The dictionaries of the string columns (event, func, runtime, domain, reason, go_type).
#[derive(Default)]
struct Dicts {
    event: Dict,
    func: Dict,
    runtime: Dict,
    domain: Dict,
    reason: Dict,
    go_type: Dict,
}

fn prim<T: ArrowPrimitiveType>(v: Vec<T::Native>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::from_iter_values(v))
}

fn opt<T: ArrowPrimitiveType>(v: Vec<Option<T::Native>>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::from_iter(v))
}

impl Columns {
    fn len(&self) -> usize {
        self.ts_ns.len()
    }

    fn push(&mut self, row: &Row<'_>, dicts: &mut Dicts) -> Result<(), WriteError> {
        self.ts_ns.push(row.ts_ns);
        self.pid.push(row.pid);
        self.tid.push(row.tid);
        self.event
            .push(Some(dicts.event.key(row.event.as_str(), col::EVENT)?));
        self.func.push(Some(dicts.func.key(row.func, col::FUNC)?));
        self.addr.push(row.addr);
        self.size.push(row.size);
        self.old_addr.push(row.old_addr);
        self.align.push(row.align);
        self.runtime
            .push(Some(dicts.runtime.key(row.runtime.as_str(), col::RUNTIME)?));
        self.domain.push(
            row.domain
                .map(|d| dicts.domain.key(d.as_str(), col::DOMAIN))
                .transpose()?,
        );
        self.stack_id.push(row.stack_id);
        self.old_size.push(row.old_size);
        self.prot.push(row.prot);
        self.map_flags.push(row.map_flags);
        self.fd.push(row.fd);
        self.errno.push(row.errno);
        self.gc_cycle.push(row.gc_cycle);
        self.gc_generation.push(row.gc_generation);
        self.heap_live.push(row.heap_live);
        self.heap_goal.push(row.heap_goal);
        self.collected.push(row.collected);
        self.uncollectable.push(row.uncollectable);
        self.reason.push(
            row.reason
                .map(|r| dicts.reason.key(r, col::REASON))
                .transpose()?,
        );
        self.go_type.push(
            row.go_type
                .map(|t| dicts.go_type.key(t, col::GO_TYPE))
                .transpose()?,
        );
        self.heap_inuse.push(row.go_cycle.heap_inuse);
        self.heap_idle.push(row.go_cycle.heap_idle);
        self.heap_released.push(row.go_cycle.heap_released);
        self.stack_inuse.push(row.go_cycle.stack_inuse);
        self.gc_cpu_ns.push(row.go_cycle.gc_cpu_ns);
        self.cpu_capacity_ns.push(row.go_cycle.cpu_capacity_ns);
        self.gomaxprocs.push(row.go_cycle.gomaxprocs);
        self.rss_bytes.push(row.rss_bytes);
        self.heap_rss_bytes.push(row.heap_rss_bytes);
        Ok(())
    }

    /// Moves the buffered rows into a batch, leaving the buffers empty.
    fn take_batch(&mut self, dicts: &Dicts) -> Result<RecordBatch, WriteError> {
        use arrow::datatypes::{UInt32Type, UInt64Type};
        let c = std::mem::take(self);
        let columns: Vec<ArrayRef> = vec![
            prim::<UInt64Type>(c.ts_ns),
            Arc::new(UInt32Array::from(c.pid)),
            Arc::new(UInt32Array::from(c.tid)),
            dicts.event.array(c.event)?,
            dicts.func.array(c.func)?,
            Arc::new(UInt64Array::from(c.addr)),
            Arc::new(UInt64Array::from(c.size)),
            opt::<UInt64Type>(c.old_addr),
            opt::<UInt64Type>(c.align),
            dicts.runtime.array(c.runtime)?,
            dicts.domain.array(c.domain)?,
            opt::<UInt32Type>(c.stack_id),
            opt::<UInt64Type>(c.old_size),
            opt::<UInt32Type>(c.prot),
            opt::<UInt32Type>(c.map_flags),
            Arc::new(Int32Array::from(c.fd)),
            opt::<UInt32Type>(c.errno),
            opt::<UInt64Type>(c.gc_cycle),
            opt::<UInt32Type>(c.gc_generation),
            opt::<UInt64Type>(c.heap_live),
            opt::<UInt64Type>(c.heap_goal),
            opt::<UInt64Type>(c.collected),
            opt::<UInt64Type>(c.uncollectable),
            dicts.reason.array(c.reason)?,
            dicts.go_type.array(c.go_type)?,
            opt::<UInt64Type>(c.heap_inuse),
            opt::<UInt64Type>(c.heap_idle),
            opt::<UInt64Type>(c.heap_released),
            opt::<UInt64Type>(c.stack_inuse),
            opt::<UInt64Type>(c.gc_cpu_ns),
            opt::<UInt64Type>(c.cpu_capacity_ns),
            opt::<UInt32Type>(c.gomaxprocs),
            opt::<UInt64Type>(c.rss_bytes),
            opt::<UInt64Type>(c.heap_rss_bytes),
        ];
        Ok(RecordBatch::try_new(schema::events_schema(), columns)?)
    }
}

struct OpenSegment {
    writer: ArrowWriter<File>,
    tmp_path: PathBuf,
    final_name: String,
    opened: Instant,
}

/// Writes a trace's `events/` folder, one segment at a time.
pub struct TraceWriter {
    events_dir: PathBuf,
    options: WriterOptions,
    metadata: Vec<KeyValue>,
    columns: Columns,
    dicts: Dicts,
    open: Option<OpenSegment>,
    next_index: u32,
    segments: Vec<String>,
    rows_written: u64,
    /// Rows of the closed segments (`rows_written` counts the open one's too).
    rows_closed: u64,
    bytes_closed: u64,
    batches_written: u64,
}

/// Debug builds only: `ALLOCTRACE_TEST_WRITER_PANIC=N` makes the encoder "panic" at batch N, so
/// the tests can check what a panic inside the Parquet writer does to a recording (one line, a
/// non-zero exit, the closed segments readable). Release builds compile it away.
fn inject_test_panic(batch: u64) {
    #[cfg(debug_assertions)]
    {
        static AT: std::sync::LazyLock<Option<u64>> = std::sync::LazyLock::new(|| {
            std::env::var("ALLOCTRACE_TEST_WRITER_PANIC")
                .ok()
                .and_then(|v| v.parse().ok())
        });
        if *AT == Some(batch) {
            panic!("injected writer panic at batch {batch}");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = batch;
}

impl TraceWriter {
    /// Prepares `trace_dir/events/`. `metadata` goes into every segment's footer (see
    /// [`schema::meta`]); the schema version is added here.
    pub fn create(
        trace_dir: &Path,
        options: WriterOptions,
        mut metadata: Vec<KeyValue>,
    ) -> Result<TraceWriter, WriteError> {
        let events_dir = trace_dir.join(schema::EVENTS_DIR);
        fs::create_dir_all(&events_dir).map_err(|source| WriteError::Create {
            path: events_dir.clone(),
            source,
        })?;
        metadata.push(KeyValue::new(
            schema::meta::SCHEMA_VERSION.to_owned(),
            schema::SCHEMA_VERSION.to_string(),
        ));
        Ok(TraceWriter {
            events_dir,
            options,
            metadata,
            columns: Columns::default(),
            dicts: Dicts::default(),
            open: None,
            next_index: 0,
            segments: Vec::new(),
            rows_written: 0,
            rows_closed: 0,
            bytes_closed: 0,
            batches_written: 0,
        })
    }

    fn properties(&self) -> WriterProperties {
        let level = ZstdLevel::try_new(self.options.zstd_level).unwrap_or_default();
        let ts = ColumnPath::from(col::TS_NS);
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_size(self.options.row_group_rows)
            // Pages end at 1 MiB rather than every 20k rows: each page costs a fresh zstd
            // context, which showed up in the tracer's profile.
            .set_data_page_row_count_limit(1 << 17)
            .set_statistics_enabled(EnabledStatistics::Page)
            // Timestamps grow steadily: deltas pack into a few bits, a dictionary would not help.
            .set_column_dictionary_enabled(ts.clone(), false)
            .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
            .set_key_value_metadata(Some(self.metadata.clone()))
            .build()
    }

    /// Appends one row; encodes a batch when enough rows are buffered.
    pub fn push(&mut self, row: &Row<'_>) -> Result<(), WriteError> {
        self.columns.push(row, &mut self.dicts)?;
        if self.columns.len() >= self.options.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Encodes the buffered rows into the open segment (opening one if needed).
    pub fn flush_batch(&mut self) -> Result<(), WriteError> {
        if self.columns.len() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            self.open_segment()?;
        }
        let batch = self.columns.take_batch(&self.dicts)?;
        self.rows_written += batch.num_rows() as u64;
        if let Some(open) = self.open.as_mut() {
            self.batches_written += 1;
            let batch_number = self.batches_written;
            guard::catch(|| {
                inject_test_panic(batch_number);
                open.writer.write(&batch)
            })??;
        }
        Ok(())
    }

    fn open_segment(&mut self) -> Result<(), WriteError> {
        let final_name = schema::segment_file_name(self.next_index);
        self.next_index += 1;
        let tmp_path = self.events_dir.join(format!("{final_name}.tmp"));
        let file = File::create(&tmp_path).map_err(|source| WriteError::Create {
            path: tmp_path.clone(),
            source,
        })?;
        let writer = ArrowWriter::try_new(file, schema::events_schema(), Some(self.properties()))?;
        self.open = Some(OpenSegment {
            writer,
            tmp_path,
            final_name,
            opened: Instant::now(),
        });
        Ok(())
    }

    /// Whether the open segment has reached its size or age limit.
    pub fn segment_due(&self) -> bool {
        self.open.as_ref().is_some_and(|open| {
            open.writer.bytes_written() + open.writer.in_progress_size()
                >= self.options.segment_max_bytes
                || open.opened.elapsed() >= self.options.segment_max_duration
        })
    }

    /// Flushes buffered rows and closes the open segment under its final name. Each segment has
    /// its own string dictionaries, so they restart here.
    pub fn roll(&mut self) -> Result<(), WriteError> {
        self.flush_batch()?;
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let final_path = self.events_dir.join(&open.final_name);
        let file = guard::catch(|| open.writer.into_inner())??;
        file.sync_all().map_err(|source| WriteError::Close {
            path: open.tmp_path.clone(),
            source,
        })?;
        self.bytes_closed += file.metadata().map(|m| m.len()).unwrap_or(0);
        fs::rename(&open.tmp_path, &final_path).map_err(|source| WriteError::Close {
            path: final_path.clone(),
            source,
        })?;
        self.segments
            .push(format!("{}/{}", schema::EVENTS_DIR, open.final_name));
        self.rows_closed = self.rows_written;
        self.dicts = Dicts::default();
        Ok(())
    }

    /// Rows handed to the Parquet encoder so far.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// Rows in the closed segments: what a reader sees if the writer stops now.
    pub fn rows_closed(&self) -> u64 {
        self.rows_closed
    }

    /// Rows buffered and not yet encoded.
    pub fn rows_buffered(&self) -> usize {
        self.columns.len()
    }

    /// Size of the closed segments on disk.
    pub fn bytes_closed(&self) -> u64 {
        self.bytes_closed
    }

    /// Closed segments, relative to the trace directory.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Closes the last segment; returns every segment written.
    pub fn finish(mut self) -> Result<Vec<String>, WriteError> {
        self.roll()?;
        Ok(self.segments)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn read_all(dir: &Path, segments: &[String]) -> Vec<RecordBatch> {
        segments
            .iter()
            .flat_map(|s| {
                let file = File::open(dir.join(s)).unwrap();
                ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Check that rows written across several batches and segments read back unchanged, with the
    /// schema of `schema::events_schema` and no leftover temporary files.
    #[test]
    fn round_trip_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let options = WriterOptions {
            batch_rows: 3,
            ..WriterOptions::default()
        };
        let mut w = TraceWriter::create(dir.path(), options, vec![]).unwrap();
        for i in 0..10u64 {
            let event = if i % 2 == 0 {
                Event::Alloc
            } else {
                Event::Free
            };
            w.push(&Row {
                ts_ns: i,
                pid: 7,
                tid: 8,
                event,
                func: "malloc",
                addr: 0x1000 + i,
                size: i * 16,
                old_addr: (i == 3).then_some(5),
                ..Row::default()
            })
            .unwrap();
            if i == 6 {
                w.roll().unwrap();
            }
        }
        let segments = w.finish().unwrap();
        assert_eq!(
            segments,
            vec!["events/part-000000.parquet", "events/part-000001.parquet"]
        );
        let batches = read_all(dir.path(), &segments);
        assert!(
            batches
                .iter()
                .all(|b| b.schema() == schema::events_schema())
        );
        let ts: Vec<u64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::UInt64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ts, (0..10).collect::<Vec<_>>());
        let old: Vec<Option<u64>> = batches
            .iter()
            .flat_map(|b| {
                b.column(7)
                    .as_primitive::<arrow::datatypes::UInt64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(old.iter().filter(|v| v.is_some()).count(), 1);
        let events = batches[1].column(3).as_dictionary::<UInt16Type>();
        let values = events.values().as_string::<i32>();
        assert_eq!(values.value(events.keys().value(0) as usize), "free");
        assert!(
            fs::read_dir(dir.path().join("events")).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp"))
        );
        assert_eq!(
            batches
                .iter()
                .map(|b| b.column(10).null_count())
                .sum::<usize>(),
            10
        );
    }
}

/// Writes a small table (stacks, modules) as one Parquet file, atomically (temporary file, then
/// rename), so a reader never sees half of it.
pub fn write_table(path: &Path, batch: &RecordBatch) -> Result<(), WriteError> {
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|source| WriteError::Create {
        path: tmp.clone(),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            schema::meta::SCHEMA_VERSION.to_owned(),
            schema::SCHEMA_VERSION.to_string(),
        )]))
        .build();
    let file = guard::catch(|| -> Result<File, ParquetError> {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
        writer.write(batch)?;
        writer.into_inner()
    })??;
    file.sync_all().map_err(|source| WriteError::Close {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|source| WriteError::Close {
        path: path.to_owned(),
        source,
    })
}

/// One Python frame of a stack (a `python_frames` item).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PythonFrame {
    /// Qualified name (`co_qualname`). Shared: a recording holds the same names in many stacks.
    pub function: Arc<str>,
    pub file: Arc<str>,
    pub line: Option<u32>,
}

/// One `stacks.parquet` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackRow {
    pub stack_id: u32,
    /// Native addresses, innermost first.
    pub frames: Vec<u64>,
    /// Python frames, innermost first; `None` when the stack has none.
    pub python: Option<Vec<PythonFrame>>,
}

/// The `stacks.parquet` batch for `stacks` (id, frames innermost first), without Python frames.
pub fn stacks_batch(stacks: &[(u32, Vec<u64>)]) -> Result<RecordBatch, WriteError> {
    let rows: Vec<StackRow> = stacks
        .iter()
        .map(|(id, frames)| StackRow {
            stack_id: *id,
            frames: frames.clone(),
            python: None,
        })
        .collect();
    stack_rows_batch(&rows)
}

/// The `stacks.parquet` batch for `rows`.
pub fn stack_rows_batch(rows: &[StackRow]) -> Result<RecordBatch, WriteError> {
    use arrow::{
        array::{ListArray, ListBuilder, StructArray, UInt64Builder},
        buffer::{NullBuffer, OffsetBuffer},
        datatypes::{DataType, Field, Fields},
    };
    let ids = UInt32Array::from_iter_values(rows.iter().map(|r| r.stack_id));
    let mut frames = ListBuilder::new(UInt64Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::UInt64,
        false,
    )));
    for row in rows {
        frames.values().append_slice(&row.frames);
        frames.append(true);
    }
    // python_frames: a list of structs, built from flat columns and offsets.
    // (Collected: arrow's `from_iter_values` needs an iterator of known length.)
    let py_frames: Vec<&PythonFrame> = rows
        .iter()
        .flat_map(|r| r.python.iter().flatten())
        .collect();
    let fields = match schema::python_frame_type() {
        DataType::Struct(fields) => fields,
        _ => Fields::empty(),
    };
    let items = StructArray::try_new(
        fields,
        vec![
            Arc::new(StringArray::from_iter_values(
                py_frames.iter().map(|f| &*f.function),
            )),
            Arc::new(StringArray::from_iter_values(
                py_frames.iter().map(|f| &*f.file),
            )),
            Arc::new(UInt32Array::from_iter(py_frames.iter().map(|f| f.line))),
        ],
        None,
    )?;
    let offsets =
        OffsetBuffer::from_lengths(rows.iter().map(|r| r.python.as_ref().map_or(0, Vec::len)));
    let valid = NullBuffer::from_iter(rows.iter().map(|r| r.python.is_some()));
    let python = ListArray::try_new(
        Arc::new(Field::new("item", schema::python_frame_type(), false)),
        offsets,
        Arc::new(items),
        Some(valid),
    )?;
    Ok(RecordBatch::try_new(
        schema::stacks_schema(),
        vec![Arc::new(ids), Arc::new(frames.finish()), Arc::new(python)],
    )?)
}

/// One traced process, for `processes.parquet` (see `schema::process_col`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub execs: u32,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub runtime: String,
    pub events: u64,
}

/// The `processes.parquet` batch.
pub fn processes_batch(processes: &[ProcessRow]) -> Result<RecordBatch, WriteError> {
    use arrow::{
        array::{ListBuilder, StringBuilder},
        datatypes::Field,
    };
    let mut argv = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "item",
        arrow::datatypes::DataType::Utf8,
        false,
    )));
    for p in processes {
        for arg in &p.argv {
            argv.values().append_value(arg);
        }
        argv.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(
            processes.iter().map(|p| p.pid),
        )),
        Arc::new(UInt32Array::from_iter(processes.iter().map(|p| p.ppid))),
        Arc::new(UInt64Array::from_iter_values(
            processes.iter().map(|p| p.start_ns),
        )),
        Arc::new(UInt64Array::from_iter(processes.iter().map(|p| p.end_ns))),
        Arc::new(UInt64Array::from_iter(
            processes
                .iter()
                .map(|p| p.end_ns.map(|end| end.saturating_sub(p.start_ns))),
        )),
        Arc::new(StringArray::from_iter(
            processes.iter().map(|p| p.exe.as_deref()),
        )),
        Arc::new(argv.finish()),
        Arc::new(UInt32Array::from_iter_values(
            processes.iter().map(|p| p.execs),
        )),
        Arc::new(Int32Array::from_iter(processes.iter().map(|p| p.exit_code))),
        Arc::new(Int32Array::from_iter(
            processes.iter().map(|p| p.exit_signal),
        )),
        Arc::new(StringArray::from_iter_values(
            processes.iter().map(|p| p.runtime.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            processes.iter().map(|p| p.events),
        )),
    ];
    Ok(RecordBatch::try_new(schema::processes_schema(), columns)?)
}

/// One executable mapping of a traced process, for `modules.parquet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRow {
    pub pid: u32,
    pub path: String,
    pub build_id: Option<String>,
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub perms: String,
    pub ts_ns: u64,
}

/// The `modules.parquet` batch.
pub fn modules_batch(modules: &[ModuleRow]) -> Result<RecordBatch, WriteError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(modules.iter().map(|m| m.pid))),
        Arc::new(StringArray::from_iter_values(
            modules.iter().map(|m| m.path.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            modules.iter().map(|m| m.build_id.as_deref()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            modules.iter().map(|m| m.start),
        )),
        Arc::new(UInt64Array::from_iter_values(modules.iter().map(|m| m.end))),
        Arc::new(UInt64Array::from_iter_values(
            modules.iter().map(|m| m.file_offset),
        )),
        Arc::new(StringArray::from_iter_values(
            modules.iter().map(|m| m.perms.as_str()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            modules.iter().map(|m| m.ts_ns),
        )),
    ];
    Ok(RecordBatch::try_new(schema::modules_schema(), columns)?)
}
