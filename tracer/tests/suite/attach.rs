//! Attach mode: `record -p PID` traces a running process, all its threads, until it exits.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
};

use trace_format::run::{Exit, Status};

use super::common::{Trace, alloctrace, build, tempdir};

/// Check that attaching to a running two-threaded process records exactly the allocations it
/// makes after the attach, on both threads, and stops cleanly when the process exits, saying
/// that it exited.
#[test]
fn attach_to_running_process() {
    let bin = build("attach_me.c", "gcc", &["-pthread"]);
    let mut target = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut target_out = BufReader::new(target.stdout.take().unwrap());
    let mut line = String::new();
    target_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let dir = tempdir();
    let mut tracer = alloctrace()
        .args(["record", "-o"])
        .arg(dir.path())
        .args(["-p", &target.id().to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Handshake: the tracer says when its probes are in place.
    let mut tracer_err = BufReader::new(tracer.stderr.take().unwrap());
    let mut announce = String::new();
    tracer_err.read_line(&mut announce).unwrap();
    assert!(announce.contains("recording pid"), "{announce}");

    let mut stdin = target.stdin.take().unwrap();
    writeln!(stdin, "go 2500").unwrap();
    line.clear();
    target_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done 5000");
    writeln!(stdin, "quit").unwrap();
    assert!(target.wait().unwrap().success());
    let status = tracer.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.mode, "attach");
    assert_eq!(trace.run.status, Status::Complete);
    // It exited; its status went to its parent (this test), not to alloctrace.
    assert_eq!(trace.run.exit, Some(Exit::default()));
    let allocs: Vec<_> = trace
        .rows
        .iter()
        .filter(|r| r.event == "alloc" && r.size == 4321)
        .collect();
    assert_eq!(allocs.len(), 5000);
    let threads: std::collections::BTreeSet<u32> = allocs.iter().map(|r| r.tid).collect();
    assert_eq!(threads.len(), 2, "allocations on both threads");
    let addrs: std::collections::HashSet<u64> = allocs.iter().map(|r| r.addr).collect();
    let frees = trace
        .rows
        .iter()
        .filter(|r| r.event == "free" && addrs.contains(&r.addr))
        .count();
    assert_eq!(frees, 5000);
    assert_eq!(trace.run.lost_total, 0);
}
