//! Reads alloctrace traces (Parquet events plus `run.json`) and reduces them into reports.
//!
//! ```no_run
//! let run = analysis::run::RunInfo::read(std::path::Path::new("trace")).unwrap();
//! println!("{} events", run.events_written);
//! ```

pub mod run;
pub mod schema;
pub mod write;
