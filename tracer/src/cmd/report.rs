//! `alloctrace report` and `alloctrace compare`: thin wrappers over the analysis crate.

use analysis::{compare, render, report};

use crate::cli::{CompareArgs, ReportArgs};

pub fn run(args: ReportArgs, quiet: bool) -> anyhow::Result<i32> {
    let report = report::build(&args.trace, &report::Options::default())?;
    let html = args
        .output
        .unwrap_or_else(|| args.trace.join("report.html"));
    let json = args.json.unwrap_or_else(|| args.trace.join("summary.json"));
    render::html::write_report(&report, &html)?;
    report.summary().write_json(&json)?;
    if !quiet {
        print!("{}", render::text::summary(&report));
        println!("report: {}", html.display());
        println!("summary: {}", json.display());
    }
    Ok(0)
}

pub fn compare(args: CompareArgs, quiet: bool) -> anyhow::Result<i32> {
    let dashboard = compare::build(&args.traces, &report::Options::default())?;
    render::html::write_dashboard(&dashboard, &args.output)?;
    if !quiet {
        println!("dashboard: {}", args.output.display());
    }
    Ok(0)
}
