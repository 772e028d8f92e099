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

/// Check CPython on every interpreter found: with `__slots__` (`--variant slots`) a node is one
/// object of one size on every version (without, 3.11 and 3.12 also allocate a values array
/// and 3.13 sizes the object by its inline values), so the allocations of the node's size whose
/// innermost Python frame is `bottom_up` (recorded with `--python-frames`; size alone does not
/// tell a node, a 3.12 `range` iterator has the same size) are exactly the program's nodes.
#[test]
fn python_binary_trees_node_count() {
    for py in super::python::interpreters("python_binary_trees_node_count") {
        eprintln!(
            "python_binary_trees_node_count: CPython {}",
            py.version_text()
        );
        for size in ["6", "8"] {
            python_binary_trees_on(&py.exe, size);
        }
    }
}

fn python_binary_trees_on(python: &std::path::Path, size: &str) {
    let dir = tempdir();
    let out = alloctrace()
        .args(["record", "-q", "--python-frames", "-o"])
        .arg(dir.path())
        .arg("--")
        .arg(python)
        .arg(bin_dir().join("alloc-python.py"))
        .args(["binary-trees", "--size", size, "--variant", "slots"])
        .output()
        .unwrap();
    assert_success(&out);
    let c = counters(&out.stdout);
    let node_size = c["extra"]["node_size"].as_u64().unwrap();
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.lost_total, 0);
    let frames = analysis::symbolize::StackFrames::load(dir.path())
        .unwrap()
        .expect("frames.parquet");
    // The innermost Python frame: the first of a `.py` file, after the native ones.
    let made_by = |row: &super::common::Row| {
        let stack = frames.stack(Some(row.pid), row.stack_id?)?;
        let python = stack
            .into_iter()
            .find(|f| f.file.as_deref().is_some_and(|f| f.ends_with(".py")))?;
        python.function
    };
    let nodes = trace
        .rows
        .iter()
        .filter(|r| r.event == "alloc" && r.size == node_size)
        .filter(|r| made_by(r).as_deref() == Some("bottom_up"))
        .count() as u64;
    assert_eq!(nodes, c["objects"].as_u64().unwrap(), "size {size}");
}
