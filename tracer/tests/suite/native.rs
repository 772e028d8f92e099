//! Native programs (C, C++, Rust on the system allocator): every allocator call counted once.

use std::collections::BTreeMap;

use super::common::{Trace, assert_success, build, counters, record, tempdir};

/// The program's marker sizes: 3001..3999 (and multiples for calloc/reallocarray).
fn is_marked(size: u64) -> bool {
    (3001..4000).contains(&size)
        || (3001..4000).contains(&(size / 3))
        || (3001..4000).contains(&(size / 5))
        || (5001..6000).contains(&size)
}

/// Check that a two-threaded C program calling every glibc entry point, with frees on the other
/// thread, gets exactly its own per-function counts and byte sums, that every block is freed
/// exactly once in the trace, and that nothing is lost.
#[test]
fn c_every_entry_point_two_threads() {
    let bin = build("native_all.c", "gcc", &["-pthread"]);
    let dir = tempdir();
    let out = record(dir.path(), &[&bin, &"300"]);
    assert_success(&out);
    let expected = counters(&out.stdout);
    let trace = Trace::load(dir.path());
    let pid = trace.run.pids[0];
    assert_eq!(trace.run.lost_total, 0, "{:?}", trace.run.counters);
    assert_eq!(trace.run.counters["lost_ring_full"], 0);

    let allocs = trace.per_func("alloc", |r| is_marked(r.size));
    let reallocs = trace.per_func("realloc", |r| r.size == 0 || is_marked(r.size));
    let get = |name: &str| -> (u64, u64) {
        let v = &expected[name];
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
    };
    let merged = expected["same_address_aligned_alloc_memalign"]
        .as_bool()
        .unwrap();
    let mut want_allocs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for name in [
        "malloc",
        "calloc",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
    ] {
        // glibc 2.36 has aligned_alloc and memalign at one address: one probe, rows say
        // `aligned_alloc` (docs/schema.md).
        let key = if merged && name == "memalign" {
            "aligned_alloc"
        } else {
            name
        };
        let e = want_allocs.entry(key.to_owned()).or_default();
        e.0 += get(name).0;
        e.1 += get(name).1;
    }
    assert_eq!(allocs, want_allocs);
    let want_reallocs: BTreeMap<String, (u64, u64)> = [
        ("realloc", get("realloc")),
        ("reallocarray", get("reallocarray")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(reallocs, want_reallocs);

    // Every free of a marked block: exactly as many as the program made, and a replay of the
    // whole trace (spawn mode sees every allocation) never frees a block that is not live.
    let (live_at_end, unmatched) = trace.replay(pid);
    assert!(
        live_at_end.values().all(|r| !is_marked(r.size)),
        "marked block never freed: {live_at_end:?}"
    );
    // At most the freeing thread's tcache, which glibc allocates internally.
    assert!(
        unmatched <= 1,
        "{unmatched} frees of blocks never allocated"
    );
    let frees = trace
        .rows
        .iter()
        .filter(|r| r.event == "free" && r.func == "free")
        .count() as u64;
    assert!(frees >= get("free").0, "{frees} frees < {}", get("free").0);
    // Both threads allocated and freed.
    let tids: std::collections::BTreeSet<u32> = trace
        .rows
        .iter()
        .filter(|r| r.event == "free" && r.func == "free")
        .map(|r| r.tid)
        .collect();
    assert!(tids.len() >= 2, "frees seen on threads {tids:?}");
    // Nested calls were folded, free(NULL) skipped, and counted as such.
    assert!(trace.run.counters["free_null_skipped"] >= 300);
}

/// Check that every operator new/delete form is counted exactly once (not also as the malloc
/// and free they call), with the program's own counts.
#[test]
fn cxx_new_delete_once() {
    let bin = build("cxx_new_delete.cpp", "g++", &["-std=c++17"]);
    let dir = tempdir();
    let out = record(dir.path(), &[&bin, &"200"]);
    assert_success(&out);
    let expected = counters(&out.stdout);
    let n = |k: &str| expected[k].as_u64().unwrap();
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.lost_total, 0);
    // The program's object sizes; 4096 (stdout's buffer) is in range but not one of them.
    let program_size = |size: u64| (3001..7000).contains(&size) && size != 4096;
    let allocs = trace.per_func("alloc", |r| program_size(r.size));
    let count = |f: &str| allocs.get(f).map_or(0, |v| v.0);
    assert_eq!(count("operator new(unsigned long)"), n("new"), "{allocs:?}");
    assert_eq!(
        count("operator new[](unsigned long)"),
        n("new_array"),
        "{allocs:?}"
    );
    assert_eq!(
        count("operator new(unsigned long, std::nothrow_t const&)"),
        n("new_nothrow"),
        "{allocs:?}"
    );
    assert_eq!(
        count("operator new(unsigned long, std::align_val_t)")
            + count("operator new[](unsigned long, std::align_val_t)"),
        n("new_aligned"),
        "{allocs:?}"
    );
    // No malloc row for the same objects: operator new's inner malloc is folded.
    assert_eq!(count("malloc") + count("aligned_alloc"), 0, "{allocs:?}");
    // Deletes: every form counted once, and no separate free rows for those blocks.
    let new_addrs: std::collections::HashSet<u64> = trace
        .rows
        .iter()
        .filter(|r| {
            r.event == "alloc" && r.func.starts_with("operator new") && program_size(r.size)
        })
        .map(|r| r.addr)
        .collect();
    let deletes = trace
        .rows
        .iter()
        .filter(|r| {
            r.event == "free"
                && r.func.starts_with("operator delete")
                && new_addrs.contains(&r.addr)
        })
        .count() as u64;
    assert_eq!(deletes, n("delete") + n("delete_array"));
    let scalar = trace
        .rows
        .iter()
        .filter(|r| {
            r.event == "free"
                && r.func.starts_with("operator delete(")
                && new_addrs.contains(&r.addr)
        })
        .count() as u64;
    assert_eq!(scalar, n("delete"));
    let plain_frees = trace
        .rows
        .iter()
        .filter(|r| r.event == "free" && r.func == "free" && new_addrs.contains(&r.addr))
        .count();
    assert_eq!(
        plain_frees, 0,
        "operator delete's inner free must be folded"
    );
    let (live, _) = trace.replay(trace.run.pids[0]);
    assert!(live.values().all(|r| !program_size(r.size)));
}

/// Check a Rust program on the system allocator: alloc, alloc_zeroed, realloc, over-aligned
/// alloc and dealloc map to malloc, calloc, realloc, posix_memalign and free, once each.
#[test]
fn rust_system_allocator() {
    let bin = build("rust_system.rs", "rustc", &[]);
    let dir = tempdir();
    let out = record(dir.path(), &[&bin, &"150"]);
    assert_success(&out);
    let expected = counters(&out.stdout);
    let n = |k: &str| expected[k].as_u64().unwrap();
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.lost_total, 0);
    let marked = |size: u64| (3001..3201).contains(&size);
    let allocs = trace.per_func("alloc", |r| marked(r.size));
    assert_eq!(
        allocs.get("malloc").copied(),
        Some((n("alloc"), n("alloc_bytes"))),
        "{allocs:?}"
    );
    assert_eq!(
        allocs.get("calloc").map(|v| v.0),
        Some(n("alloc_zeroed")),
        "{allocs:?}"
    );
    assert_eq!(
        allocs.get("posix_memalign").map(|v| v.0),
        Some(n("aligned")),
        "{allocs:?}"
    );
    assert!(
        trace
            .rows
            .iter()
            .filter(|r| r.func == "posix_memalign" && marked(r.size))
            .all(|r| r.align == Some(256) && r.addr % 256 == 0)
    );
    let reallocs = trace.per_func("realloc", |r| (7001..7201).contains(&r.size));
    assert_eq!(
        reallocs.get("realloc").map(|v| v.0),
        Some(n("realloc")),
        "{reallocs:?}"
    );
    trace.replay(trace.run.pids[0]);
}

/// Check run.json's `target`: the started command's CPU time and peak RSS from `wait4` are its
/// own, probes included. The program reads its own `getrusage` right before it exits; the
/// tracer's figure may only add the exit itself.
#[test]
fn target_usage_is_the_commands_own() {
    let bin = build("usage_self.c", "gcc", &[]);
    let dir = tempdir();
    let out = record(dir.path(), &[&bin, &"100000"]);
    assert_success(&out);
    let own = counters(&out.stdout);
    let trace = Trace::load(dir.path());
    assert_eq!(trace.run.lost_total, 0);
    let mallocs = trace.per_func("alloc", |r| (16..272).contains(&r.size));
    assert_eq!(
        mallocs.get("malloc").map(|v| v.0),
        Some(100_000),
        "{mallocs:?}"
    );
    let target = trace.run.target.as_ref().expect("run.json has `target`");
    let own_cpu_s = own["cpu_us"].as_f64().unwrap() / 1e6;
    assert!(
        target.cpu_s() >= own_cpu_s - 1e-3 && target.cpu_s() <= own_cpu_s + 0.05,
        "wait4 {:.4} s against the program's own {own_cpu_s:.4} s",
        target.cpu_s()
    );
    assert!(target.max_rss_bytes >= own["maxrss_kib"].as_u64().unwrap() * 1024);
}
