//! A real browser opens the HTML pages: headless Chromium loads a report and a dashboard from
//! `file://`, the page's own script checks that every chart holds data and painted pixels, and
//! this test reads that verdict from the DOM, checks the console stayed silent and saves
//! screenshots (to `$ALLOCTRACE_SCREENSHOT_DIR`, default `target/screenshots/`). The native
//! trace gets stack and frame tables, so its report also draws the symbolized call sites and
//! both flame graphs.
//!
//! The browser is bounded by `--timeout` and `--virtual-time-budget` (virtual time: the page's
//! timers run without waiting), with a process watchdog in case Chromium itself hangs.

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use analysis::{
    compare, render,
    report::{self, Options},
    symbolize::{FrameRow, Status, write_frames},
    synth::{Flavor, Synth},
};
use trace_format::{
    schema,
    write::{ProcessRow, processes_batch, stacks_batch, write_table},
};
use wait_timeout::ChildExt;

const WATCHDOG: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    let path = env::var_os("ALLOCTRACE_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "headless Chromium not found at {}: run `cargo xtask setup` (installs the Debian package `chromium`)",
        path.display()
    );
    path
}

fn screenshot_dir() -> PathBuf {
    let dir = env::var_os("ALLOCTRACE_SCREENSHOT_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"),
        PathBuf::from,
    );
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `page` with `extra` arguments; returns (stdout, stderr).
fn run_chromium(page: &Path, extra: &[String]) -> (String, String) {
    run_chromium_url(&format!("file://{}", page.display()), extra)
}

/// [`run_chromium`] on a URL.
fn run_chromium_url(url: &str, extra: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args([
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=15000",
            "--timeout=60000",
        ])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = match child.wait_timeout(WATCHDOG).unwrap() {
        Some(status) => status,
        None => {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("chromium did not finish within {WATCHDOG:?} on {url}");
        }
    };
    let stdout = fs::read_to_string(out.path()).unwrap();
    let stderr = fs::read_to_string(err.path()).unwrap();
    assert!(
        status.success(),
        "chromium failed ({status}) on {url}:\n{stderr}"
    );
    (stdout, stderr)
}

/// The page's verdict: Ok(number of charts, DOM) or Err(what failed).
fn check_page(page: &Path) -> Result<(usize, String), String> {
    check_url(&format!("file://{}", page.display()))
}

/// A number attribute of the status element.
fn status_attr(tag: &str, name: &str) -> Option<usize> {
    tag.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
}

/// [`check_page`] of a URL (a `file://` page, possibly with a `#fragment`).
fn check_url(url: &str) -> Result<(usize, String), String> {
    let (dom, stderr) = run_chromium_url(url, &["--dump-dom".to_owned()]);
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    let start = dom
        .find("<div id=\"alloctrace-status\"")
        .ok_or("no status element in the DOM")?;
    let tag_end = start
        + dom[start..]
            .find('>')
            .ok_or("unterminated status element")?;
    let tag = &dom[start..tag_end];
    let text_end = tag_end
        + dom[tag_end..]
            .find("</div>")
            .ok_or("unterminated status element")?;
    let text = &dom[tag_end + 1..text_end];
    if !tag.contains("data-state=\"ok\"") {
        return Err(format!("page check: {text}"));
    }
    if !console.is_empty() {
        return Err(format!("console messages: {console:?}"));
    }
    let charts = status_attr(tag, "data-charts").ok_or("no chart count")?;
    Ok((charts, dom))
}

fn screenshot(page: &Path, name: &str) -> PathBuf {
    let path = screenshot_dir().join(name);
    let _ = fs::remove_file(&path);
    run_chromium(
        page,
        &[
            format!("--screenshot={}", path.display()),
            "--window-size=1400,3000".to_owned(),
        ],
    );
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "screenshot {} is missing or blank ({size} bytes)",
        path.display()
    );
    path
}

/// Gives the synthetic trace in `dir` (pid 4242, stacks 0..64) a stacks table and a frames
/// table, as `alloctrace symbolize` would: each stack is malloc ← leaf_N ← mid_M ← main, with
/// one inlined frame and one stripped library frame.
fn symbolize_synthetic(dir: &Path) {
    const PID: u32 = 4242;
    let stacks: Vec<(u32, Vec<u64>)> = (0..64u32)
        .map(|s| {
            let leaf = 0x2000 + u64::from(s % 12) * 16;
            let mid = 0x3000 + u64::from(s % 4) * 16;
            (s, vec![0x1000, leaf, mid, 0x4000, 0x9000])
        })
        .collect();
    write_table(
        &dir.join(schema::STACKS_FILE),
        &stacks_batch(&stacks).unwrap(),
    )
    .unwrap();
    let row = |address: u64, ret: bool, depth: u16, function: String| FrameRow {
        pid: PID,
        address,
        return_address: ret,
        depth,
        inlined: false,
        module: Some("/usr/bin/synthetic".into()),
        build_id: None,
        module_offset: Some(address),
        file: Some("/src/synthetic.c".into()),
        line: Some(10 + depth as u32),
        column: None,
        function: Some(function),
        status: Status::Ok,
    };
    let mut rows = vec![row(0x1000, false, 0, "malloc".into())];
    for k in 0..12 {
        let mut inlined = row(0x2000 + k * 16, true, 0, format!("inline_helper_{k}"));
        inlined.inlined = true;
        rows.push(inlined);
        rows.push(row(0x2000 + k * 16, true, 1, format!("leaf_{k}")));
    }
    for k in 0..4 {
        rows.push(row(0x3000 + k * 16, true, 0, format!("mid_{k}")));
    }
    rows.push(row(0x4000, true, 0, "main".into()));
    rows.push(FrameRow {
        function: None,
        file: None,
        line: None,
        module: Some("/usr/lib/libstripped.so".into()),
        status: Status::Stripped,
        ..row(0x9000, true, 0, String::new())
    });
    write_frames(dir, &rows).unwrap();
}

fn synth(dir: &Path, flavor: Flavor, label: &str, work_units: u64) {
    Synth {
        events: 40_000,
        flavor,
        max_live: 3000,
        label: Some(label.to_owned()),
        work_units: Some(work_units),
        ..Synth::default()
    }
    .write(dir)
    .unwrap();
}

/// Writes `processes.parquet` for a synthetic trace: its process and a forked worker.
fn add_worker_process(dir: &Path) {
    let pid = Synth::default().pid;
    let process = |pid, ppid, argv: &[&str]| ProcessRow {
        pid,
        ppid,
        start_ns: 1,
        end_ns: Some(2),
        exe: Some("/usr/bin/python3.12".into()),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        exit_code: Some(0),
        runtime: "python".into(),
        events: 1,
        ..ProcessRow::default()
    };
    let rows = [
        process(pid, Some(1), &["python3", "pool.py"]),
        process(
            pid + 100,
            Some(pid),
            &[
                "python3",
                "-c",
                "from multiprocessing.spawn import spawn_main",
            ],
        ),
    ];
    write_table(
        &dir.join(schema::PROCESSES_FILE),
        &processes_batch(&rows).unwrap(),
    )
    .unwrap();
}

/// Check in headless Chromium that reports of native, Go and Python traces and their
/// comparison dashboard render every chart with data, with no script error or console message,
/// on either x axis of the over-time charts (wall time, allocation progress; the page itself
/// checks that the axis not shown would hold data too),
/// that a trace of several processes gets the per-process table,
/// that the symbolized native report draws both flame graphs (bytes allocated, live at the
/// peak) and names its call sites, and save screenshots of each.
#[test]
fn reports_and_dashboard_render_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let flavors = [
        (Flavor::Native, "native"),
        (Flavor::Go, "go"),
        (Flavor::Python, "python"),
    ];
    let mut traces = Vec::new();
    for (flavor, name) in flavors {
        let dir = work.path().join(name);
        synth(&dir, flavor, name, 500);
        if flavor == Flavor::Native {
            symbolize_synthetic(&dir);
        }
        if flavor == Flavor::Python {
            // A process tree (a pool worker beside the interpreter): the per-process table.
            add_worker_process(&dir);
        }
        if flavor == Flavor::Go {
            // A cheap gc,rss recording beside the full trace: the dashboard takes its time and
            // GC figures from it.
            synth(&dir.join(compare::LIGHT_DIR), flavor, name, 500);
        }
        let report = report::build(&dir, &Options::default()).unwrap();
        let page = work.path().join(format!("report-{name}.html"));
        std::fs::write(&page, render::html::report_html(&report).unwrap()).unwrap();
        let (charts, dom) = check_page(&page).unwrap_or_else(|e| panic!("report-{name}.html: {e}"));
        if flavor == Flavor::Python {
            assert!(
                dom.contains("id=\"table-processes\"") && dom.contains("multiprocessing"),
                "no per-process table in report-{name}.html"
            );
        }
        if flavor == Flavor::Native {
            for id in ["chart-flame-alloc", "chart-flame-peak"] {
                assert!(
                    dom.contains(&format!("id=\"{id}\"")),
                    "no {id} in report-{name}.html"
                );
            }
            assert!(
                dom.contains("leaf_"),
                "call sites not symbolized in report-{name}.html"
            );
            assert!(dom.contains("[stripped]"), "stripped frame not marked");
        }
        // Timeline, rates, footprint and the size histogram are always there.
        assert!(
            charts >= 6,
            "report-{name}.html rendered only {charts} charts"
        );
        screenshot(&page, &format!("report-{name}.png"));
        // The over-time charts start on wall time and render on allocation progress too.
        assert!(
            dom.contains("data-x=\"time\""),
            "report-{name}.html: no x-axis switch on wall time"
        );
        let (progress_charts, dom) = check_url(&format!("file://{}#x=progress", page.display()))
            .unwrap_or_else(|e| panic!("report-{name}.html#x=progress: {e}"));
        assert_eq!(progress_charts, charts);
        assert!(
            dom.contains("data-x=\"progress\""),
            "report-{name}.html#x=progress is not on progress"
        );
        traces.push(dir);
    }
    let dashboard = compare::build(&traces, &Options::default()).unwrap();
    let page = work.path().join("dashboard.html");
    std::fs::write(&page, render::html::dashboard_html(&dashboard).unwrap()).unwrap();
    let (charts, dom) = check_page(&page).unwrap_or_else(|e| panic!("dashboard.html: {e}"));
    assert!(charts >= 10, "dashboard rendered only {charts} charts");
    // Cross-run overlays start on allocation progress, and render on wall time too.
    assert!(
        dom.contains("data-x=\"progress\""),
        "the dashboard does not start on progress"
    );
    assert!(
        dom.contains("gc,rss` recording") && dom.contains(" †"),
        "the dashboard does not say which figures come from the fully traced runs"
    );
    let (time_charts, dom) = check_url(&format!("file://{}#x=time", page.display()))
        .unwrap_or_else(|e| panic!("dashboard.html#x=time: {e}"));
    assert_eq!(time_charts, charts);
    assert!(dom.contains("data-x=\"time\""));
    screenshot(&page, "dashboard.png");
}

/// Check that the report of a trace without allocations (a `--events gc,rss` recording)
/// renders, on wall time only: no progress axis without allocations.
#[test]
fn gc_only_report_renders_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("trace");
    common::write_trace(&dir, &common::gc_only_rows());
    let report = report::build(&dir, &Options::default()).unwrap();
    let page = work.path().join("gc-only.html");
    fs::write(&page, render::html::report_html(&report).unwrap()).unwrap();
    let (charts, dom) = check_page(&page).unwrap_or_else(|e| panic!("gc-only.html: {e}"));
    assert!(charts >= 2, "gc-only.html rendered only {charts} charts");
    assert!(
        !dom.contains("id=\"xswitch\""),
        "a progress axis without allocations"
    );
}

/// Check that the check can fail: a page whose chart library is broken reports failure
/// instead of passing silently.
#[test]
fn broken_page_is_detected() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("trace");
    synth(&dir, Flavor::Native, "native", 10);
    let report = report::build(&dir, &Options::default()).unwrap();
    let html = render::html::report_html(&report).unwrap();
    let sabotage = "<script>echarts.init = function () { throw new Error('injected failure'); };</script>\n<script id=\"alloctrace-data\"";
    let broken = html.replacen("<script id=\"alloctrace-data\"", sabotage, 1);
    assert_ne!(broken, html);
    let page = work.path().join("broken.html");
    fs::write(&page, broken).unwrap();
    let err = check_page(&page).unwrap_err();
    assert!(err.contains("injected failure"), "{err}");
}

/// Check the pages named in `ALLOCTRACE_CHECK_HTML` (a path list; `cargo xtask test` sets it to
/// the quick suite's landing page and dashboards of real traces) the same way: loaded from file
/// in headless Chromium, no console errors, every chart rendered (the landing page has no chart:
/// its own check counts its rows, sorts each column and finds each report link); and save
/// their screenshots. Without the variable there is nothing extra to check.
#[test]
fn extra_pages_render_in_chromium() {
    let Some(list) = env::var_os("ALLOCTRACE_CHECK_HTML") else {
        return;
    };
    for page in env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()) {
        let (charts, dom) = check_page(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let rows = dom
            .find("<div id=\"alloctrace-status\"")
            .and_then(|start| status_attr(&dom[start..], "data-rows"))
            .unwrap_or(0);
        assert!(
            charts >= 1 || rows >= 1,
            "{} rendered no chart and no row",
            page.display()
        );
        let name = page
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        screenshot(&page, &format!("suite-{name}.png"));
    }
}
