//! Process trees: forks, subshells, execs and multiprocessing pools are traced by default,
//! each process's rows under its own pid, listed in processes.parquet; `--no-follow` keeps to
//! the top process.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use analysis::processes::ProcessSummary;

use super::common::{Trace, build, record_with, tempdir};

/// The rows of processes.parquet (read by the analysis crate, as reports read them).
fn processes(dir: &Path) -> Vec<ProcessSummary> {
    analysis::processes::read(dir).unwrap()
}

/// Every JSON line of a program's stdout.
fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// malloc rows of `size` per pid.
fn mallocs_of_size(trace: &Trace, size: u64) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for row in trace
        .rows
        .iter()
        .filter(|r| r.event == "alloc" && r.size == size)
    {
        *out.entry(row.pid).or_insert(0) += 1;
    }
    out
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/tree/script.sh")
}

/// Check that a shell script running a C program as a child, in a subshell and by exec gives
/// three pids, each with exactly the program's own malloc count at its own size and no other
/// pid with any; that the exec'd one is the shell's own pid; that processes.parquet lists
/// them all with their parent, exit code and row counts; and that alloctrace exits with the
/// script's status.
#[test]
fn shell_child_subshell_exec() {
    let bin = build("tree/marked.c", "gcc", &[]);
    let dir = tempdir();
    let out = record_with(dir.path(), &[], &[&"/bin/sh", &script(), &bin]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = json_lines(&out.stdout);
    assert_eq!(reports.len(), 3, "{reports:?}");
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.lost_total, 0, "{:?}", trace.run.counters);
    let top = trace.run.pids[0];
    let mut pids = BTreeSet::new();
    for report in &reports {
        let pid = report["pid"].as_u64().unwrap() as u32;
        let size = report["size"].as_u64().unwrap();
        let count = report["count"].as_u64().unwrap();
        assert_eq!(
            mallocs_of_size(&trace, size),
            BTreeMap::from([(pid, count)]),
            "size {size}"
        );
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 3);
    // The last one is the shell itself after `exec`.
    assert_eq!(reports[2]["pid"].as_u64(), Some(u64::from(top)));

    let procs = processes(dir.path());
    let by_pid: BTreeMap<u32, &ProcessSummary> = procs.iter().map(|p| (p.pid, p)).collect();
    for pid in &pids {
        let p = by_pid
            .get(pid)
            .unwrap_or_else(|| panic!("{pid} not in {procs:?}"));
        assert_eq!(p.exit_code, Some(0), "{p:?}");
        assert!(p.end_ns.is_some_and(|end| Some(end) >= p.start_ns), "{p:?}");
        assert!(
            p.exe.as_deref().is_some_and(|e| e.ends_with("marked")),
            "{p:?}"
        );
        let rows = trace.rows.iter().filter(|r| r.pid == *pid).count() as u64;
        assert_eq!(p.events, Some(rows), "{p:?}");
    }
    // The child's parent is the shell; the subshell's program runs under the subshell (or is
    // the subshell, when the shell execs its last command).
    assert_eq!(
        by_pid[&reports[0]["pid"].as_u64().unwrap().try_into().unwrap()].ppid,
        Some(top)
    );
    assert!(procs.len() >= 3 && procs.len() <= 4, "{procs:?}");
}

/// Check that `--no-follow` traces the top process only: the shell's children have no rows,
/// and the program the shell execs into (same pid) is traced.
#[test]
fn no_follow_top_only() {
    let bin = build("tree/marked.c", "gcc", &[]);
    let dir = tempdir();
    let out = record_with(dir.path(), &["--no-follow"], &[&"/bin/sh", &script(), &bin]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = json_lines(&out.stdout);
    assert_eq!(reports.len(), 3);
    let trace = Trace::load(dir.path());
    let top = trace.run.pids[0];
    assert!(
        trace.rows.iter().all(|r| r.pid == top),
        "rows of other pids"
    );
    for report in &reports[..2] {
        assert_eq!(
            mallocs_of_size(&trace, report["size"].as_u64().unwrap()),
            BTreeMap::new()
        );
    }
    let procs = processes(dir.path());
    assert_eq!(procs.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![top]);
}

/// Check that alloctrace exits with the top command's status, after the whole tree.
#[test]
fn exit_status_of_top_command() {
    let dir = tempdir();
    let out = record_with(
        dir.path(),
        &[],
        &[&"/bin/sh", &"-c", &"(sleep 0.3; /bin/true) & exit 7"],
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let procs = processes(dir.path());
    // The background subshell outlived the top shell: the recording waited for it.
    assert!(procs.len() >= 2, "{procs:?}");
    assert!(procs.iter().all(|p| p.end_ns.is_some()), "{procs:?}");
}

/// Check that a multiprocessing pool with fork and one with spawn give each worker's
/// allocations once, under the worker's own pid: for every task size, the rows of that size
/// are exactly the task's count, all in the worker that ran it. On every CPython found.
#[test]
fn python_pool_fork_and_spawn() {
    for py in super::python::interpreters("python_pool_fork_and_spawn") {
        eprintln!("python_pool_fork_and_spawn: CPython {}", py.version_text());
        pool_on(&py.exe);
    }
}

fn pool_on(python: &Path) {
    let dir = tempdir();
    let pool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/tree/pool.py");
    let out = record_with(dir.path(), &["--no-stacks"], &[&python, &pool]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = &json_lines(&out.stdout)[0];
    let count = report["count"].as_u64().unwrap();
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.lost_total, 0, "{:?}", trace.run.counters);
    let mut methods = BTreeSet::new();
    let workers = report["workers"].as_object().unwrap();
    assert!(workers.len() >= 2, "{workers:?}");
    for (pid, tasks) in workers {
        let pid: u32 = pid.parse().unwrap();
        assert_ne!(pid, report["parent"].as_u64().unwrap() as u32);
        for task in tasks.as_array().unwrap() {
            let size = task[1].as_u64().unwrap();
            methods.insert(task[0].as_str().unwrap().to_owned());
            // A bytearray of n bytes is one allocation of n + 1 (its terminating NUL).
            let mut per_pid = BTreeMap::new();
            for row in trace
                .rows
                .iter()
                .filter(|r| matches!(r.event.as_str(), "alloc" | "realloc") && r.size == size + 1)
            {
                *per_pid.entry(row.pid).or_insert(0u64) += 1;
            }
            assert_eq!(
                per_pid,
                BTreeMap::from([(pid, count)]),
                "task of size {size}"
            );
        }
    }
    assert_eq!(methods.len(), 2);
    let procs = processes(dir.path());
    for pid in workers.keys() {
        let pid: u32 = pid.parse().unwrap();
        assert!(
            procs.iter().any(|p| p.pid == pid),
            "worker {pid} not in {procs:?}"
        );
    }
}

/// Check that a Go program that execs a C program is traced in both images under one pid:
/// the Go allocations before the exec, and the C program's exact malloc count after it.
#[test]
fn go_execs_c() {
    let bin = build("tree/marked.c", "gcc", &[]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/go_exec");
    let go = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go_exec");
    let status = super::golang::go_build("1.19", &src)
        .arg("-o")
        .arg(&go)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "go build failed");
    let dir = tempdir();
    // The shell starts the Go program as a child: its exec is a descendant's.
    let command = format!("{} {} 4104 21; true", go.display(), bin.display());
    let out = record_with(dir.path(), &[], &[&"/bin/sh", &"-c", &command]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let go_pid = lines[0]["pid"].as_u64().unwrap() as u32;
    assert_eq!(lines[1]["pid"].as_u64(), Some(u64::from(go_pid)));
    let trace = Trace::load(dir.path());
    assert_eq!(
        mallocs_of_size(&trace, 4104),
        BTreeMap::from([(go_pid, 21)])
    );
    let go_rows = trace
        .rows
        .iter()
        .filter(|r| r.pid == go_pid && r.event == "alloc" && (9000..9100).contains(&r.size))
        .count();
    assert_eq!(go_rows, 100);
    let procs = processes(dir.path());
    let p = procs.iter().find(|p| p.pid == go_pid).unwrap();
    assert!(
        p.exe.as_deref().is_some_and(|e| e.ends_with("marked")),
        "{p:?}"
    );
}
