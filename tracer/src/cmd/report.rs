//! `alloctrace report` and `alloctrace compare`: thin wrappers over the analysis crate.

use std::path::Path;

use analysis::{compare, render, report, summary::Summary};
use anyhow::Context as _;
use trace_format::schema;

use crate::cli::{CompareArgs, ReportArgs};

pub fn run(args: ReportArgs, quiet: bool) -> anyhow::Result<i32> {
    let report = report::build(
        &args.trace,
        &report::Options {
            pid: args.pid,
            ..report::Options::default()
        },
    )?;
    let html = args
        .output
        .unwrap_or_else(|| args.trace.join(schema::REPORT_FILE));
    let json = args
        .json
        .unwrap_or_else(|| args.trace.join(schema::SUMMARY_FILE));
    write(&html, &render::html::report_html(&report)?)?;
    Summary::from_report(&report).write_json(&json)?;
    if !quiet {
        super::out(&format!(
            "{}report: {}\nsummary: {}\n",
            render::text::summary(&report),
            html.display(),
            json.display()
        ))?;
    }
    Ok(0)
}

pub fn compare(args: CompareArgs, quiet: bool) -> anyhow::Result<i32> {
    let dashboard = compare::build(&args.traces, &report::Options::default())?;
    write(&args.output, &render::html::dashboard_html(&dashboard)?)?;
    if !quiet {
        super::out(&format!("dashboard: {}\n", args.output.display()))?;
    }
    Ok(0)
}

fn write(path: &Path, page: &str) -> anyhow::Result<()> {
    std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))
}
