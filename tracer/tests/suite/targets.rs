//! The workload targets (built by `cargo xtask targets`): each program's own counters agree with
//! its trace. `cargo xtask test` builds them before running the tests.

use std::path::PathBuf;

use super::common::{Trace, alloctrace, assert_success, counters, tempdir};

fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("ALLOCTRACE_TARGETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .map(|t| t.join("targets"))
                .unwrap_or_default()
        })
        .join("bin");
    assert!(
        dir.join("alloc-cpp").exists(),
        "the workload targets are not built in {}: run `cargo xtask targets`",
        dir.display()
    );
    dir
}

/// Records `command` running binary-trees at depth 8 (with call stacks, symbolized at the end);
/// returns the trace and the program's counters.
fn binary_trees(command: &[PathBuf]) -> (Trace, serde_json::Value, tempfile::TempDir) {
    let dir = tempdir();
    let out = alloctrace()
        .args(["record", "-q", "-o"])
        .arg(dir.path())
        .arg("--")
        .args(command)
        .args(["binary-trees", "--size", "8"])
        .output()
        .unwrap();
    assert_success(&out);
    let c = counters(&out.stdout);
    (Trace::load(dir.path()), c, dir)
}

/// Check C++ and Rust: the allocations of the node's size are exactly the program's own count
/// of nodes: every `new Node` / `Box::new(Node)` once, also when Rust's global allocator is
/// mimalloc or jemalloc (probed at their own entry points: glibc never sees those calls).
#[test]
fn native_binary_trees_node_count() {
    for bin in [
        "alloc-cpp",
        "alloc-rust-system",
        "alloc-rust-mimalloc",
        "alloc-rust-jemalloc",
    ] {
        let (trace, c, _dir) = binary_trees(&[bin_dir().join(bin)]);
        let node_size = c["extra"]["node_size"].as_u64().unwrap();
        let nodes = trace
            .rows
            .iter()
            .filter(|r| r.event == "alloc" && r.size == node_size)
            .count() as u64;
        assert_eq!(nodes, c["objects"].as_u64().unwrap(), "{bin}");
        assert_eq!(trace.run.lost_total, 0);
    }
}

/// Check Go: allocations of the node's type are the program's node count.
#[test]
fn go_binary_trees_node_count() {
    for bin in ["alloc-go1.19", "alloc-go1.27"] {
        let (trace, c, dir) = binary_trees(&[bin_dir().join(bin)]);
        let want = c["objects"].as_u64().unwrap();
        let node_size = c["extra"]["node_size"].as_u64().unwrap();
        let rows = super::golang_rows(dir.path());
        let nodes = rows
            .iter()
            .filter(|r| r.0 == "alloc" && r.1 == node_size && r.2.as_deref() == Some("main.Node"))
            .count() as u64;
        assert_eq!(nodes, want, "{bin}");
        assert_eq!(trace.run.lost_total, 0);
    }
}

/// Check CPython: node objects are allocations of the node's size in the `obj` domain. The
/// interpreter's own scaffolding in the phase (a closure, a result tuple) makes a few objects of
/// the same size, so the check is that the trace's count minus the program's node count is the
/// same small constant at two tree depths: every node counted exactly once, since a node missed
/// or counted twice would change the difference with the depth. On CPython 3.11 only: on
/// 3.12.1 the interpreter's own node-sized objects differ between the two depths (5 vs 6, not yet
/// explained), so this heuristic does not hold there; the exact per-size counts of
/// `suite::python` (objects, frames) check counting once on every version.
#[test]
fn python_binary_trees_node_count() {
    for py in super::python::interpreters("python_binary_trees_node_count")
        .into_iter()
        .filter(|py| py.version.1 == 11)
    {
        eprintln!(
            "python_binary_trees_node_count: CPython {}",
            py.version_text()
        );
        python_binary_trees_on(&py.exe);
    }
}

fn python_binary_trees_on(python: &std::path::Path) {
    let mut offsets = Vec::new();
    for size in ["6", "8"] {
        let dir = tempdir();
        let out = alloctrace()
            .args(["record", "-q", "--no-stacks", "-o"])
            .arg(dir.path())
            .arg("--")
            .arg(python)
            .arg(bin_dir().join("alloc-python.py"))
            .args(["binary-trees", "--size", size])
            .output()
            .unwrap();
        assert_success(&out);
        let c = counters(&out.stdout);
        let want = c["objects"].as_u64().unwrap();
        let node_size = c["extra"]["node_size"].as_u64().unwrap();
        let rows = super::python_rows(dir.path());
        // The program brackets its tree building with two bytes objects of unique sizes.
        let at = |size: u64| {
            rows.iter()
                .position(|r| r.0 == "alloc" && r.1 == size)
                .expect("phase marker")
        };
        let (begin, end) = (at(7001 + 33), at(7003 + 33));
        let nodes = rows[begin..end]
            .iter()
            .filter(|r| r.0 == "alloc" && r.1 == node_size && r.3.as_deref() == Some("obj"))
            .count() as u64;
        assert!(
            nodes >= want,
            "size {size}: {nodes} allocations for {want} nodes"
        );
        offsets.push(nodes - want);
        assert_eq!(Trace::load(dir.path()).run.lost_total, 0);
    }
    assert_eq!(
        offsets[0], offsets[1],
        "the difference grows with the tree: nodes missed or counted twice"
    );
    assert!(offsets[0] <= 3, "{} extra node-sized objects", offsets[0]);
}
