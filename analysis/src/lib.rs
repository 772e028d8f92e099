//! Reads alloctrace traces (Parquet events plus `run.json`) and reduces them into reports:
//! timelines, fragmentation (footprint versus live, address-space gaps, internal waste),
//! allocation patterns, leaks, the peak and GC activity; renders them as a self-contained HTML
//! page, a `summary.json` and a few terminal lines; and compares several runs.
//!
//! ```no_run
//! use analysis::{compare, render, report};
//! let options = report::Options::default();
//! let report = report::build("trace".as_ref(), &options)?;
//! std::fs::write("report.html", render::html::report_html(&report)?)?;
//! analysis::summary::Summary::from_report(&report).write_json("summary.json".as_ref())?;
//! print!("{}", render::text::summary(&report));
//!
//! let dashboard = compare::build(&["traces/a", "traces/b"], &options)?;
//! std::fs::write("dashboard.html", render::html::dashboard_html(&dashboard)?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod addrmap;
pub mod compare;
pub mod dataset;
pub mod error;
pub mod export;
pub mod flame;
pub mod load;
pub mod pass;
pub mod processes;
pub mod render;
pub mod replay;
pub mod report;
pub mod reports;
pub mod sizeclass;
mod space;
pub mod summary;
pub mod symbolize;
pub mod synth;
mod util;

pub use error::AnalysisError;
pub use util::Log2Hist;
