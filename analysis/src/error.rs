//! Errors of opening a trace and building its reports. The library has one error type per
//! operation, not one for everything: this one, [`crate::symbolize::SymbolizeError`],
//! [`crate::export::ExportError`] and [`crate::dataset::DatasetError`]. Every variant's
//! `Display` is a single line that names the file (and column) at fault; the underlying cause is
//! its `source()`.
//!
//! ```no_run
//! match analysis::report::build("trace".as_ref(), &Default::default()) {
//!     Ok(report) => println!("{}", analysis::render::text::summary(&report)),
//!     Err(err) => eprintln!("alloctrace: {err}"),
//! }
//! ```

use std::{io, path::PathBuf};

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Reading a trace or writing a report failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    #[error("{} is not a trace directory (it does not exist or is not a directory)", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{} has no run.json: not an alloctrace trace directory", dir.display())]
    MissingRunJson {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid alloctrace run.json", path.display())]
    InvalidRunJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} holds no event segments (events/part-*.parquet)", dir.display())]
    NoSegments { dir: PathBuf },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a readable Parquet segment (empty, truncated or corrupt)", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("{} lacks the required column `{column}`", path.display())]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{}: column `{column}` has type {found}, expected {expected}", path.display())]
    ColumnType {
        path: PathBuf,
        column: &'static str,
        expected: String,
        found: String,
    },
    #[error("{}: column `{column}` cannot be decoded (corrupt data)", path.display())]
    Column {
        path: PathBuf,
        column: &'static str,
        #[source]
        source: ArrowError,
    },
    #[error("{}: the Parquet decoder failed on malformed data: {message}", path.display())]
    DecoderPanic { path: PathBuf, message: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialise the report data")]
    Serialize {
        #[source]
        source: serde_json::Error,
    },
    #[error("compare needs at least one trace directory")]
    NothingToCompare,
    #[error("{} has no rows of process {pid}", dir.display())]
    NoSuchProcess { dir: PathBuf, pid: u32 },
}
