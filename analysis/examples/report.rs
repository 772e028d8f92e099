//! Builds a report and prints throughput and peak memory:
//! `cargo run --release -p alloctrace-analysis --example report -- TRACE [report.html]`.
//! This is the one-shot measurement behind the published ≥ 50 M-event figure.

use std::{env, fs, path::PathBuf, process::ExitCode, time::Instant};

use analysis::{render, report, summary::Summary};

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: report TRACE [report.html]");
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let report = match report::build(&dir, &report::Options::default()) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("report: {err}");
            return ExitCode::FAILURE;
        }
    };
    let elapsed = started.elapsed();
    print!("{}", render::text::summary(&report));
    let rows = report.trace.rows;
    println!(
        "analysed {rows} events in {:.2} s: {:.1} M events/s, peak RSS {:.1} MiB",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64() / 1e6,
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    if let Some(out) = args.next() {
        let page = match render::html::report_html(&report) {
            Ok(page) => page,
            Err(err) => {
                eprintln!("report: {err}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(err) = fs::write(&out, page) {
            eprintln!("report: {out}: {err}");
            return ExitCode::FAILURE;
        }
        if let Err(err) = Summary::from_report(&report)
            .write_json(&PathBuf::from(&out).with_extension("summary.json"))
        {
            eprintln!("report: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
