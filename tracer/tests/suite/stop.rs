//! Stopping: Ctrl-C/SIGTERM to the tracer, and a crashing target, leave a readable trace with
//! every event up to the stop.

use std::{
    io::{BufRead as _, BufReader},
    process::Stdio,
};

use trace_format::run::Status;

use super::common::{Trace, alloctrace, build, tempdir};

fn stop_with(signal: nix::sys::signal::Signal) {
    let bin = build("stop_here.c", "gcc", &[]);
    let dir = tempdir();
    let mut child = alloctrace()
        .args(["record", "-q", "-o"])
        .arg(dir.path())
        .arg("--")
        .arg(&bin)
        .arg("5000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The target prints "ready" after its 5000 pairs: a handshake, not a sleep.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready 5000");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The signal is passed on to the target, which dies of it: the shell convention 128+N.
    assert_eq!(out.status.code(), Some(128 + signal as i32), "{stderr}");
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.status, Status::Interrupted);
    assert_eq!(trace.run.lost_total, 0);
    let allocs = trace
        .rows
        .iter()
        .filter(|r| r.event == "alloc" && r.size == 3333)
        .count();
    let frees: Vec<u64> = trace
        .rows
        .iter()
        .filter(|r| r.event == "alloc" && r.size == 3333)
        .map(|r| r.addr)
        .collect();
    assert_eq!(allocs, 5000);
    let freed = trace
        .rows
        .iter()
        .filter(|r| r.event == "free" && frees.contains(&r.addr))
        .count();
    assert!(freed >= 5000, "{freed}");
    // No temporary (unfinished) segment left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("events"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Check that SIGINT to the tracer mid-run leaves readable Parquet with every event up to the
/// stop, status `interrupted`, and the signal passed on to the target.
#[test]
fn sigint_keeps_everything_before_the_stop() {
    stop_with(nix::sys::signal::Signal::SIGINT);
}

/// Check the same for SIGTERM.
#[test]
fn sigterm_keeps_everything_before_the_stop() {
    stop_with(nix::sys::signal::Signal::SIGTERM);
}

/// Check that a target that crashes leaves a complete trace up to the crash, records the
/// signal in run.json, and that alloctrace exits with 128+SIGSEGV.
#[test]
fn crashing_target() {
    let bin = build("stop_here.c", "gcc", &[]);
    let dir = tempdir();
    let out = alloctrace()
        .args(["record", "-q", "-o"])
        .arg(dir.path())
        .arg("--")
        .arg(&bin)
        .args(["2000", "crash"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + 11),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.status, Status::Complete);
    assert_eq!(trace.run.exit.as_ref().and_then(|e| e.signal), Some(11));
    assert_eq!(
        trace
            .rows
            .iter()
            .filter(|r| r.event == "alloc" && r.size == 3333)
            .count(),
        2000
    );
}

/// Check that a panic inside the Parquet writer while recording (injected at the 40th batch:
/// debug builds read `ALLOCTRACE_TEST_WRITER_PANIC`) gives one line and exit status 1, lets
/// the command finish, and leaves a trace whose closed segments are readable, marked
/// `failed`, with the rows of the open segment counted as lost.
#[test]
fn writer_panic_keeps_the_closed_segments() {
    let bin = build("churn.c", "gcc", &[]);
    let dir = tempdir();
    let out = alloctrace()
        .args(["record", "-q", "--segment-mb", "1", "-o"])
        .arg(dir.path())
        .arg("--")
        .arg(&bin)
        .arg("2000000")
        .env("ALLOCTRACE_TEST_WRITER_PANIC", "40")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("the Parquet encoder failed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The command ran to its end, untraced after the failure.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"pairs\":2000000"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.status, Status::Failed);
    assert!(
        !trace.run.segments.is_empty(),
        "segments closed before the panic"
    );
    assert_eq!(trace.rows.len() as u64, trace.run.events_written);
    let unwritten = trace.run.counters["lost_unwritten"];
    assert!(unwritten > 0);
    assert!(trace.run.lost_total >= unwritten);
    assert!(
        trace.run.warnings.iter().any(|w| w.contains("encoder")),
        "{:?}",
        trace.run.warnings
    );
    // The analysis reads it like any other trace.
    assert!(analysis::report::build(dir.path(), &Default::default()).is_ok());
}

/// Check what `record` leaves behind when it returns. By default, a background copy of it that
/// still holds the probes (the kernel takes ~0.1 s to release each, and a program started from
/// the traced files meanwhile hits them); with `--wait-detach`, nothing: every probe is gone.
/// The recording runs in a process group of its own, so the copy is found by its group.
#[test]
fn wait_detach_leaves_no_probe_holder() {
    use std::os::unix::process::CommandExt as _;
    let bin = build("churn.c", "gcc", &[]);
    let members_left = |extra: &[&str]| {
        let dir = tempdir();
        let child = alloctrace()
            .args(["record", "-q", "--no-stacks", "-o"])
            .arg(dir.path())
            .args(extra)
            .arg("--")
            .arg(&bin)
            .arg("1000")
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let group = nix::unistd::Pid::from_raw(child.id() as i32);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        // Signal 0 to the group: Ok while any process is left in it.
        nix::sys::signal::killpg(group, None).is_ok()
    };
    assert!(
        !members_left(&["--wait-detach"]),
        "a process still holds the probes after `record --wait-detach` returned"
    );
    // The default returns while the probes are still being released (seconds for glibc's:
    // far longer than this check takes).
    assert!(members_left(&[]), "no background release after `record`");
}
