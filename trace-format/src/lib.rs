//! The alloctrace trace format, shared by the tracer that writes traces and the analysis that
//! reads them: the Parquet [`schema`] (the one definition of every column), the [`names`] of
//! events, runtimes and domains, `run.json` ([`run`]), the segment [`write`]r and the
//! [`segments`] lister, and the [`guard`] that turns a Parquet/Arrow panic on damaged input
//! into an error.
//!
//! A trace directory holds `run.json`, `events/part-NNNNNN.parquet` segments and the side
//! tables (`stacks.parquet`, `modules.parquet`, `frames.parquet`); `docs/schema.md` documents
//! them for users.
//!
//! ```no_run
//! use trace_format::{names::Event, write::{Row, TraceWriter, WriterOptions}};
//! let mut writer = TraceWriter::create("trace".as_ref(), WriterOptions::default(), vec![])?;
//! writer.push(&Row { ts_ns: 1, event: Event::Alloc, func: "malloc", addr: 0x1000, size: 16, ..Row::default() })?;
//! let segments = writer.finish()?;
//! assert_eq!(trace_format::segments::list("trace".as_ref())?.len(), segments.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod guard;
pub mod names;
pub mod run;
pub mod schema;
pub mod segments;
pub mod write;
