//! Known-answer tests: small traces written with the real writer, whose every reported number
//! is worked out by hand in the comments.

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use analysis::{
    compare,
    report::{self, Options},
    summary::Summary,
};
use common::*;
use trace_format::{
    names::{Domain, Event, Runtime},
    schema,
    write::{GoCycle, ProcessRow, Row, processes_batch, write_table},
};

fn build(rows: &[Row<'_>]) -> report::Report {
    let dir = tempfile::tempdir().unwrap();
    write_trace(dir.path(), rows);
    report::build(dir.path(), &Options::default()).unwrap()
}

/// The heap layout used by several tests (brk heap [0x10000, 0x20000)):
/// A = 1000 B at 0x10010 (chunk 1008, usable 1000), B = 4088 B at 0x11000 (usable 4088),
/// C = 24 B at 0x14000 (usable 24), D = 2000 B at 0x12000 (temporary).
fn layout_rows() -> Vec<Row<'static>> {
    vec![
        brk(50, 0x10000),
        brk(60, 0x20000),
        alloc(100, 0x10010, 1000), // A, live 1000
        alloc(200, 0x11000, 4088), // B, live 5088
        alloc(300, 0x14000, 24),   // C, live 5112: the peak
        free(400, 0x11000),        // B freed: lifetime 200 ns, 1 allocation in between
        alloc(500, 0x12000, 2000), // D, live 3024
        free(600, 0x12000),        // D freed: lifetime 100 ns, temporary
    ]
}

/// Check gap count, free bytes, largest gap, fragmentation index and empty pages against a
/// layout worked out by hand.
#[test]
fn occupancy_known_layout() {
    let report = build(&layout_rows());
    let last = report.occupancy.last.unwrap();
    // Live at the end: A [0x10010, 0x103f8) and C [0x14000, 0x14018) in [0x10000, 0x20000).
    // Gaps: [0x10000, 0x10010) = 16 B (overhead, < 32), [0x103f8, 0x14000) = 15368 B,
    // [0x14018, 0x20000) = 49128 B.
    assert_eq!(last.regions, 1);
    assert_eq!(last.region_bytes, 0x10000);
    assert_eq!(last.used_bytes, 1000 + 24);
    assert_eq!(last.overhead_bytes, 16);
    assert_eq!(last.gaps, 2);
    assert_eq!(last.free_bytes, 15368 + 49128);
    assert_eq!(last.largest_gap, 49128);
    assert!((last.frag_index - (1.0 - 49128.0 / 64496.0)).abs() < 1e-12);
    // Whole pages 0x11..=0x13 in the first gap, 0x15..=0x1f in the second.
    assert_eq!(last.empty_pages, 3 + 11);
    assert_eq!(last.outside_bytes, 0);
    assert_eq!(report.end.brk_heap, 0x10000);
}

/// Check the peak's time, size and composition, and that later changes below the peak do not
/// alter the composition recorded at the peak.
#[test]
fn peak_time_size_and_composition() {
    let report = build(&layout_rows());
    let peak = &report.peak;
    // The trace starts at the first row (ts 50); the peak is at ts 300.
    assert_eq!(peak.t_ns, 250);
    assert_eq!(peak.live_bytes, 5112);
    assert_eq!(peak.live_blocks, 3);
    assert_eq!(peak.footprint, 0x10000);
    let by_size: Vec<(String, u64, u64)> = peak
        .by_size
        .iter()
        .map(|p| (p.label.clone(), p.bytes, p.blocks))
        .collect();
    assert_eq!(
        by_size,
        vec![
            ("16".to_owned(), 24, 1),
            ("512".to_owned(), 1000, 1),
            ("2048".to_owned(), 4088, 1)
        ]
    );
    assert_eq!(peak.by_func.len(), 1);
    assert_eq!(
        (
            peak.by_func[0].label.as_str(),
            peak.by_func[0].bytes,
            peak.by_func[0].blocks
        ),
        ("malloc", 5112, 3)
    );
    let s = Summary::from_report(&report);
    assert_eq!(s.peak_live_bytes, 5112);
    assert_eq!(s.peak_live_t_ns, 250);
}

/// Check the leak set (blocks alive at the end) and the lifetimes of the freed blocks.
#[test]
fn leaks_and_lifetimes() {
    let report = build(&layout_rows());
    let leaks: BTreeSet<(u64, u64)> = report
        .leaks
        .largest
        .iter()
        .map(|l| (l.addr, l.size))
        .collect();
    assert_eq!(leaks, BTreeSet::from([(0x10010, 1000), (0x14000, 24)]));
    assert_eq!((report.leaks.blocks, report.leaks.bytes), (2, 1024));
    assert_eq!(report.leaks.largest[0].size, 1000, "largest first");
    assert_eq!(report.leaks.largest[0].t_ns, 50);

    let lt = &report.lifetimes;
    assert_eq!(lt.freed, 2);
    // B lived 200 ns (log2 bucket 8: [128, 256)), D 100 ns (bucket 7: [64, 128)).
    assert_eq!(lt.wall_ns.counts[8], 1);
    assert_eq!(lt.wall_ns.counts[7], 1);
    assert_eq!(lt.wall_ns.total(), 2);
    // B saw one allocation (C) before its free; D none.
    assert_eq!(lt.allocs_between.counts[1], 1);
    assert_eq!(lt.allocs_between.counts[0], 1);
    assert_eq!((lt.temporary.count, lt.temporary.bytes), (1, 2000));
    assert!((lt.temporary_ratio - 0.25).abs() < 1e-12);
    assert_eq!(lt.short_lived.count, 2);
}

/// Check the timeline: allocated − freed = live, and the last bucket holds the end state.
#[test]
fn timeline_balances() {
    let report = build(&layout_rows());
    let t = &report.timeline;
    let allocated: u64 = t.alloc_bytes.iter().sum();
    let freed: u64 = t.free_bytes.iter().sum();
    assert_eq!(allocated, 1000 + 4088 + 24 + 2000);
    assert_eq!(allocated - freed, 1024);
    assert_eq!(*t.live_bytes.last().unwrap(), 1024);
    assert_eq!(*t.live_blocks.last().unwrap(), 2);
    assert_eq!(t.live_bytes_max.iter().max(), Some(&5112));
    assert_eq!(*t.footprint.last().unwrap(), 0x10000);
}

/// Check realloc semantics: in place, moved (bytes copied), realloc(NULL) as malloc, failed
/// realloc keeping the old block, realloc(p, 0) as free, and the chain they form.
#[test]
fn realloc_cases_and_chains() {
    let rows = vec![
        realloc(10, 0, 0xa000, 100), // realloc(NULL, 100): a plain allocation
        realloc(20, 0xa000, 0xa000, 200), // grows in place
        realloc(30, 0xa000, 0, 5000), // fails: the 200-byte block stays
        realloc(40, 0xa000, 0xb000, 300), // moves: copies 200 bytes
        alloc(50, 0xc000, 8),
        realloc(60, 0xb000, 0, 0), // realloc(p, 0) frees p (glibc)
    ];
    let report = build(&rows);
    let r = &report.reallocs;
    assert_eq!(
        (r.count, r.in_place, r.moved, r.bytes_copied),
        (2, 1, 1, 200)
    );
    assert_eq!((r.grew, r.shrank), (2, 0));
    assert_eq!(r.chains, 1);
    assert_eq!(r.chain_lengths[2], 1);
    let chain = &r.longest[0];
    assert_eq!(
        (
            chain.reallocs,
            chain.first_size,
            chain.last_size,
            chain.start_ns,
            chain.end_ns
        ),
        (2, 100, 300, 0, Some(50))
    );
    assert_eq!(report.counters.failed_reallocs, 1);
    assert_eq!(report.end.live_bytes, 8);
    assert_eq!(report.end.live_blocks, 1);
    // The chain is one allocation living 50 ns, with 3 allocations (the moves and the 8 B
    // block) after its start.
    assert_eq!(report.lifetimes.freed, 1);
    assert_eq!(report.lifetimes.wall_ns.counts[6], 1);
}

/// Check Go accounting: live = heap_live at the last gc_end + bytes allocated since, no leaks,
/// GC cycles and stop-the-world pauses measured, the runtime's span and CPU accounting kept
/// (span fragmentation 800 − 500, retained free 900 − 600, GC CPU share 30 / 120).
#[test]
fn go_heap_and_gc() {
    let go = |ts, size| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event: Event::Alloc,
        func: "runtime.mallocgc",
        addr: 0xc000_0000 + ts,
        size,
        runtime: Runtime::Go,
        ..Row::default()
    };
    let gc = |ts, event, heap_live: Option<u64>| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event: Event::parse(event),
        func: "runtime.gc",
        runtime: Runtime::Go,
        gc_cycle: Some(1),
        heap_live,
        heap_goal: heap_live.map(|l| l * 2),
        // The runtime's own accounting at the cycle end: 800 B in in-use spans (300 not
        // marked), 900 B free of which 600 returned to the OS, 64 B of stacks; 30 ns of GC CPU
        // in 120 ns of elapsed × GOMAXPROCS.
        go_cycle: match heap_live {
            Some(_) => GoCycle {
                heap_inuse: Some(800),
                heap_idle: Some(900),
                heap_released: Some(600),
                stack_inuse: Some(64),
                gc_cpu_ns: Some(30),
                cpu_capacity_ns: Some(120),
                gomaxprocs: Some(2),
            },
            None => GoCycle::default(),
        },
        ..Row::default()
    };
    let stw = |ts, event, reason| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event: Event::parse(event),
        func: "runtime.stw",
        runtime: Runtime::Go,
        reason,
        ..Row::default()
    };
    let rows = vec![
        go(100, 1000),
        go(200, 3000), // live 4000: the peak
        gc(300, "gc_start", None),
        stw(310, "stw_start", Some("GC mark termination")),
        stw(360, "stw_end", None),
        gc(400, "gc_end", Some(500)), // live 500
        go(500, 700),                 // live 1200
    ];
    let report = build(&rows);
    assert_eq!(report.end.go_live, 1200);
    assert_eq!(report.end.go_heap_goal, 1000);
    assert_eq!(
        (
            report.peak.live_bytes,
            report.peak.t_ns,
            report.peak.go_live
        ),
        (4000, 100, 4000)
    );
    assert_eq!(report.leaks.blocks, 0);
    assert_eq!(*report.timeline.live_bytes.last().unwrap(), 1200);
    let g = &report.gc;
    assert_eq!(g.runtimes.len(), 1);
    assert_eq!(
        (
            g.runtimes[0].cycles,
            g.runtimes[0].total_ns,
            g.runtimes[0].last_heap_live
        ),
        (1, 100, Some(500))
    );
    assert_eq!(
        (g.pauses.count, g.pauses.total_ns, g.pauses.max_ns),
        (1, 50, 50)
    );
    assert_eq!(g.pauses.reasons[0].reason, "GC mark termination");
    let heap = g.runtimes[0].last_heap.unwrap();
    assert_eq!(
        (heap.inuse, heap.idle, heap.released, heap.stacks),
        (800, 900, 600, 64)
    );
    assert_eq!(g.runtimes[0].heap_series.len(), 1);
    assert_eq!(g.runtimes[0].heap_series[0].heap_live, Some(500));
    let s = Summary::from_report(&report);
    assert_eq!(s.gc_cpu_share, Some(0.25));
    assert!(
        s.gc_cpu_share_source
            .unwrap()
            .contains("go runtime's own accounting")
    );
    assert_eq!(s.go_span_frag_bytes_end, Some(300));
    assert_eq!(s.go_retained_free_bytes_end, Some(300));
    assert_eq!(s.go_stack_inuse_end, Some(64));
    assert_eq!(report.trace.runtimes, vec!["go".to_owned()]);
    assert_eq!(report.sizes.allocations, 3);
}

/// Check that small row groups, where optional columns are all null in some groups and set
/// in others (so the reader skips them only where they are null), give the same report.
#[test]
fn row_groups_with_null_columns() {
    let go = |ts, size| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event: Event::Alloc,
        func: "runtime.mallocgc",
        addr: 0xc000_0000 + ts,
        size,
        runtime: Runtime::Go,
        ..Row::default()
    };
    let mut rows: Vec<Row<'static>> = (0..10).map(|i| go(100 + i, 100)).collect();
    rows.push(Row {
        ts_ns: 200,
        pid: PID,
        tid: PID,
        event: Event::GcStart,
        func: "gc",
        runtime: Runtime::Go,
        gc_cycle: Some(1),
        ..Row::default()
    });
    rows.push(Row {
        ts_ns: 210,
        pid: PID,
        tid: PID,
        event: Event::GcEnd,
        func: "gc",
        runtime: Runtime::Go,
        gc_cycle: Some(1),
        heap_live: Some(300),
        heap_goal: Some(600),
        ..Row::default()
    });
    rows.extend((0..10).map(|i| go(300 + i, 10)));
    let small = tempfile::tempdir().unwrap();
    let options = trace_format::write::WriterOptions {
        batch_rows: 3,
        row_group_rows: 4,
        ..Default::default()
    };
    write_trace_opts(small.path(), &rows, usize::MAX, None, options);
    let report = report::build(small.path(), &Options::default()).unwrap();
    assert_eq!(report.end.go_live, 400);
    assert_eq!(report.end.go_heap_goal, 600);
    assert_eq!(report.gc.runtimes[0].cycles, 1);
    assert_eq!(report.counters.rows, 22);
    assert_eq!(report.peak.live_bytes, 1000);
}

/// Check Python accounting: arenas are footprint not live data, the malloc under
/// PyObject_Malloc is one allocation, and GC generations and collected counts are kept.
#[test]
fn python_arenas_nesting_and_gc() {
    let py = |ts, event, func, addr, size, domain| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event: Event::parse(event),
        func,
        addr,
        size,
        runtime: Runtime::Python,
        domain: Domain::parse(domain),
        ..Row::default()
    };
    let rows = vec![
        py(
            10,
            "alloc",
            "_PyObject_ArenaMmap",
            0x7f00_0000_0000,
            1 << 20,
            "arena",
        ),
        py(20, "alloc", "_PyObject_Malloc", 0x7f00_0000_0040, 32, "obj"),
        alloc(30, 0x5000, 600), // malloc under PyObject_Malloc(600) ...
        py(31, "alloc", "_PyObject_Malloc", 0x5000, 600, "obj"), // ... one allocation
        Row {
            ts_ns: 40,
            pid: PID,
            tid: PID,
            event: Event::GcStart,
            func: "gc",
            runtime: Runtime::Python,
            gc_generation: Some(0),
            ..Row::default()
        },
        Row {
            ts_ns: 90,
            pid: PID,
            tid: PID,
            event: Event::GcEnd,
            func: "gc",
            runtime: Runtime::Python,
            gc_generation: Some(0),
            collected: Some(7),
            uncollectable: Some(1),
            ..Row::default()
        },
        py(100, "free", "_PyObject_Free", 0x5000, 0, "obj"),
        free(101, 0x5000), // the free under PyObject_Free: not a second free
        py(
            110,
            "free",
            "_PyObject_ArenaMunmap",
            0x7f00_0000_0000,
            0,
            "arena",
        ),
    ];
    let report = build(&rows);
    assert_eq!(report.peak.live_bytes, 632);
    assert_eq!(report.peak.live_blocks, 2);
    assert_eq!(report.end.live_bytes, 32);
    assert_eq!(report.end.arena_bytes, 0);
    assert_eq!(report.timeline.arena_bytes.iter().max(), Some(&(1 << 20)));
    assert_eq!(report.counters.nested_duplicates, 2);
    assert_eq!(report.counters.free_unknown, 0);
    assert_eq!(report.counters.allocs, 2);
    assert_eq!(
        report
            .peak
            .by_func
            .iter()
            .map(|p| p.label.as_str())
            .collect::<Vec<_>>(),
        vec!["_PyObject_Malloc"]
    );
    let gc = &report.gc.runtimes[0];
    assert_eq!(
        (gc.cycles, gc.collected, gc.uncollectable, gc.total_ns),
        (1, 7, 1, 50)
    );
    assert_eq!(gc.generations[0].generation, 0);
    // CPython's GC share: the 50 ns of collection over the trace's duration.
    let s = Summary::from_report(&report);
    assert!(report.trace.duration_ns >= 100);
    assert_eq!(s.gc_cpu_share, Some(50.0 / report.trace.duration_ns as f64));
    assert!(s.gc_cpu_share_source.unwrap().starts_with("python"));
    assert_eq!(s.go_heap_inuse_end, None);
}

/// Check that operator new → malloc (both traced) counts as one allocation attributed to the
/// outer call, even when another thread allocates in between.
#[test]
fn nested_operator_new() {
    let new = |ts, tid, addr| Row {
        ts_ns: ts,
        pid: PID,
        tid,
        event: Event::Alloc,
        func: "operator new(unsigned long)",
        addr,
        size: 64,
        ..Row::default()
    };
    let inner = |ts, tid, addr| Row {
        ts_ns: ts,
        pid: PID,
        tid,
        event: Event::Alloc,
        func: "malloc",
        addr,
        size: 64,
        ..Row::default()
    };
    let rows = vec![
        inner(10, 1, 0x1000),
        inner(11, 2, 0x2000),
        new(12, 1, 0x1000),
        new(13, 2, 0x2000),
    ];
    let report = build(&rows);
    assert_eq!(report.end.live_blocks, 2);
    assert_eq!(report.end.live_bytes, 128);
    assert_eq!(report.sizes.allocations, 2);
    assert_eq!(report.counters.nested_duplicates, 2);
    assert_eq!(report.counters.alloc_over_live, 0);
    assert!(
        report
            .leaks
            .largest
            .iter()
            .all(|l| l.func == "operator new(unsigned long)")
    );
}

/// Check that addresses are per process: the same address live in two pids is two blocks.
#[test]
fn addresses_are_per_process() {
    let other = |row: Row<'static>| Row {
        pid: PID + 1,
        tid: PID + 1,
        ..row
    };
    let rows = vec![
        alloc(10, 0x1000, 10),
        other(alloc(11, 0x1000, 20)),
        free(12, 0x1000),
        other(alloc(13, 0x2000, 5)),
    ];
    let report = build(&rows);
    assert_eq!(report.end.live_bytes, 25);
    assert_eq!(report.trace.pids, vec![PID, PID + 1]);
    assert_eq!(report.threads.threads, 2);
    assert_eq!(report.counters.free_unknown, 0);
}

/// Check that a pid the kernel reused keeps two processes apart: each row goes to the process
/// of that pid that had started by its time, so neither total is merged into the other.
#[test]
fn reused_pid_is_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        alloc(10, 0x1000, 10), // first process: 1 block, 10 bytes, freed
        free(12, 0x1000),
        alloc(30, 0x1000, 20), // second process (started at 25): 2 blocks, 20 + 5 still live
        alloc(31, 0x2000, 5),
    ];
    write_trace(dir.path(), &rows);
    let process = |start_ns, end_ns| ProcessRow {
        pid: PID,
        start_ns,
        end_ns,
        runtime: "native".into(),
        ..ProcessRow::default()
    };
    write_table(
        &dir.path().join(schema::PROCESSES_FILE),
        &processes_batch(&[process(5, Some(20)), process(25, None)]).unwrap(),
    )
    .unwrap();
    let report = report::build(dir.path(), &Options::default()).unwrap();
    let totals: Vec<_> = report
        .processes
        .iter()
        .map(|p| (p.start_ns, p.allocs, p.alloc_bytes, p.frees, p.live_bytes))
        .collect();
    assert_eq!(
        totals,
        vec![(Some(5), 1, 10, 1, 0), (Some(25), 2, 25, 0, 25)]
    );
    assert_eq!(report.threads.threads, 2, "one thread row per process");
}

/// Check footprint bookkeeping: anonymous writable mmaps count, file and stack mappings do not,
/// mprotect and partial munmap change it, mremap moves it, madvise(DONTNEED) is counted.
#[test]
fn footprint_from_mappings() {
    let sys = |ts, event, addr, size| Row {
        ts_ns: ts,
        pid: PID,
        tid: PID,
        event: Event::parse(event),
        func: event,
        addr,
        size,
        ..Row::default()
    };
    let mmap = |ts, addr, size, prot, flags, fd| Row {
        prot: Some(prot),
        map_flags: Some(flags),
        fd: Some(fd),
        ..sys(ts, "mmap", addr, size)
    };
    let rows = vec![
        mmap(10, 0x7000_0000, 0x10000, 3, 0x22, -1), // anon RW: +64 KiB
        mmap(20, 0x7100_0000, 0x10000, 1, 0x02, 5),  // file RO: no
        mmap(30, 0x7200_0000, 0x10000, 3, 0x20022, -1), // thread stack: no
        Row {
            errno: Some(12),
            ..mmap(35, u64::MAX - 11, 0x10000, 3, 0x22, -1)
        }, // failed
        Row {
            prot: Some(0),
            ..sys(40, "mprotect", 0x7000_0000, 0x4000)
        }, // −16 KiB
        sys(50, "munmap", 0x7000_0000, 0),           // zero length: ignored
        sys(60, "munmap", 0x7000_c000, 0x4000),      // −16 KiB
        Row {
            old_addr: Some(0x7000_4000),
            old_size: Some(0x8000),
            ..sys(70, "mremap", 0x7300_0000, 0x20000)
        }, // −32 KiB +128 KiB
        Row {
            map_flags: Some(4),
            ..sys(80, "madvise", 0x7300_0000, 0x8000)
        },
    ];
    let report = build(&rows);
    assert_eq!(report.end.mapped_heap, 0x20000);
    assert_eq!(report.peak.footprint_peak, 0x20000);
    assert_eq!(report.end.released, 0x8000);
    assert_eq!(report.counters.failed_syscalls, 1);
    assert_eq!(report.timeline.released_bytes.iter().sum::<u64>(), 0x8000);
}

/// Check that rows out of time order (cross-CPU disorder) are counted, not fatal, and land in a
/// bucket, and that a trace split across segments reads as one.
#[test]
fn disorder_and_segments() {
    let rows = vec![
        alloc(1000, 0x1000, 10),
        alloc(900, 0x2000, 20),
        free(1100, 0x1000),
        alloc(1050, 0x3000, 30),
        free(5000, 0x2000),
    ];
    let dir = tempfile::tempdir().unwrap();
    write_trace_with(dir.path(), &rows, 2, None);
    // An unfinished segment must be ignored.
    std::fs::write(
        dir.path().join("events/part-000009.parquet.tmp"),
        b"half written",
    )
    .unwrap();
    let report = report::build(dir.path(), &Options::default()).unwrap();
    assert_eq!(report.trace.segments, 3);
    assert_eq!(report.counters.rows, 5);
    assert_eq!(report.counters.ts_backwards, 2);
    assert_eq!(report.end.live_bytes, 30);
    assert_eq!(report.trace.duration_ns, 4100);
    assert_eq!(report.timeline.alloc_count.iter().sum::<u64>(), 3);
}

/// Check that summary.json holds the headline numbers and reads back unchanged.
#[test]
fn summary_json_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_trace_with(
        dir.path(),
        &layout_rows(),
        usize::MAX,
        Some(serde_json::json!({"work_units": 4, "variant": "glibc"})),
    );
    let report = report::build(dir.path(), &Options::default()).unwrap();
    let path = dir.path().join("summary.json");
    Summary::from_report(&report).write_json(&path).unwrap();
    let back: Summary = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let original = Summary::from_report(&report);
    // Floats may differ in the last bit after a JSON round trip; everything else is exact.
    assert!((back.footprint_over_live_at_peak - original.footprint_over_live_at_peak).abs() < 1e-9);
    assert_eq!(
        Summary {
            footprint_over_live_at_peak: 0.0,
            mapped_footprint_over_live_at_peak: 0.0,
            frag_index_end: 0.0,
            ..back.clone()
        },
        Summary {
            footprint_over_live_at_peak: 0.0,
            mapped_footprint_over_live_at_peak: 0.0,
            frag_index_end: 0.0,
            ..original
        }
    );
    assert_eq!(back.leaked_bytes, 1024);
    assert_eq!(back.work_units, Some(4.0));
    let per = back.per_work_unit.unwrap();
    assert!((per.allocations - 1.0).abs() < 1e-12);
    assert_eq!(back.label, "native · test-program · glibc");
    let text = analysis::render::text::summary(&report);
    assert!(
        text.lines().count() >= 5 && text.contains("peak live: 5.0 KiB"),
        "{text}"
    );
}

/// Check that a trace without allocations (a `--events gc,rss` recording) reports: its
/// duration, GC cycles and collection share, and nothing allocated.
#[test]
fn gc_only_trace() {
    let report = build(&gc_only_rows());
    let s = Summary::from_report(&report);
    assert_eq!((s.allocations, s.peak_live_bytes), (0, 0));
    assert_eq!(s.duration_ns, 9_000);
    assert_eq!((s.gc_cycles, s.gc_total_ns), (3, 500));
    let share = s.gc_cpu_share.unwrap();
    assert!((share - 500.0 / 9_000.0).abs() < 1e-12, "{share}");
    assert_eq!(report.timeline.alloc_count.iter().sum::<u64>(), 0);
}

/// Check that a trace's cheap recording in its `gc-rss` subdirectory is found and summarised
/// beside the full trace (the dashboard takes duration and GC figures from it), and that a
/// trace without one has none.
#[test]
fn compare_pairs_the_cheap_recording() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [a.path(), b.path()] {
        write_trace_with(dir, &layout_rows(), usize::MAX, None);
    }
    let light = a.path().join(compare::LIGHT_DIR);
    analysis::synth::Synth {
        events: 2_000,
        flavor: analysis::synth::Flavor::Python,
        mean_gap_ns: 1_000,
        ..analysis::synth::Synth::default()
    }
    .write(&light)
    .unwrap();
    let expected = Summary::from_report(&report::build(&light, &Options::default()).unwrap());
    assert!(expected.gc_cycles > 0);
    let d = compare::build(&[a.path(), b.path()], &Options::default()).unwrap();
    let got = &d.runs[0].light.as_ref().unwrap().summary;
    assert_eq!(got.duration_ns, expected.duration_ns);
    assert_ne!(got.duration_ns, d.runs[0].summary.duration_ns);
    assert_eq!(got.gc_cycles, expected.gc_cycles);
    assert_eq!(got.gc_cpu_share, expected.gc_cpu_share);
    assert!(d.runs[1].light.is_none());
}

/// Check the dashboard: labels from run.json (made unique), per-unit normalisation only when
/// every run reports work units, and one series per run.
#[test]
fn compare_runs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    write_trace_with(
        a.path(),
        &layout_rows(),
        usize::MAX,
        Some(serde_json::json!({"work_units": 2, "label": "rust"})),
    );
    write_trace_with(
        b.path(),
        &layout_rows(),
        usize::MAX,
        Some(serde_json::json!({"work_units": 4, "label": "rust"})),
    );
    write_trace_with(c.path(), &layout_rows(), usize::MAX, None);
    let d = compare::build(&[a.path(), b.path()], &Options::default()).unwrap();
    assert!(d.per_work_unit);
    assert_eq!(d.runs.len(), 2);
    assert_ne!(d.runs[0].label, d.runs[1].label);
    assert!(d.runs[0].label.starts_with("rust ("));
    let per = |i: usize| {
        d.runs[i]
            .summary
            .per_work_unit
            .clone()
            .unwrap()
            .bytes_allocated
    };
    assert!((per(0) - 2.0 * per(1)).abs() < 1e-9);
    assert_eq!(d.runs[0].live_bytes.len(), d.runs[0].t_s.len());
    // The progress axis sums the allocations per bucket: every allocation is in one bucket.
    assert_eq!(d.runs[0].alloc_count.len(), d.runs[0].t_s.len());
    assert_eq!(
        d.runs[0].alloc_count.iter().sum::<u64>(),
        d.runs[0].summary.allocations
    );
    assert!(d.runs.iter().all(|r| r.light.is_none()));
    let d = compare::build(&[a.path(), c.path()], &Options::default()).unwrap();
    assert!(!d.per_work_unit);
    assert!(compare::build::<&std::path::Path>(&[], &Options::default()).is_err());
}

/// An `rss` row of process `pid`.
fn rss(ts_ns: u64, pid: u32, rss_bytes: u64, heap_rss_bytes: u64) -> Row<'static> {
    Row {
        ts_ns,
        pid,
        tid: pid,
        event: Event::Rss,
        func: "statm",
        rss_bytes: Some(rss_bytes),
        heap_rss_bytes: Some(heap_rss_bytes),
        ..Row::default()
    }
}

/// Check that with rss rows the footprint is the resident heap (summed over processes, each at
/// its last sample), footprint/live uses it, the peak resident set and its time are reported,
/// and the mapped footprint stays its own figure.
#[test]
fn resident_footprint_from_rss_rows() {
    let mut rows = layout_rows();
    // The brk heap maps 64 KiB; only 8 KiB of it is resident at first, 12 KiB at the live peak.
    rows.insert(0, rss(40, PID, 100_000, 8192));
    rows.insert(5, rss(250, PID, 110_000, 12288));
    // A second process: its resident memory adds to the first's.
    rows.push(rss(700, PID + 1, 50_000, 4096));
    rows.push(rss(800, PID, 90_000, 8192));
    let report = build(&rows);
    let s = Summary::from_report(&report);
    assert_eq!(s.footprint_source, "resident");
    assert_eq!(report.counters.rss_samples, 4);
    // The live peak (5112 B at ts 300) sees the sample of ts 250.
    assert_eq!(s.footprint_at_peak_live, 12288);
    assert!((s.footprint_over_live_at_peak - 12288.0 / 5112.0).abs() < 1e-12);
    assert_eq!(s.mapped_footprint_at_peak_live, 0x10000);
    assert!((s.mapped_footprint_over_live_at_peak - 65536.0 / 5112.0).abs() < 1e-12);
    // 110,000 + 50,000 at ts 700 (trace start 40).
    assert_eq!(s.peak_resident_bytes, Some(160_000));
    assert_eq!(s.peak_resident_ns, Some(660));
    assert_eq!(s.resident_end, Some(140_000));
    assert_eq!(s.peak_footprint_bytes, 12288 + 4096);
    assert_eq!(s.footprint_end, 8192 + 4096);
    assert_eq!(s.peak_mapped_footprint_bytes, 0x10000);
    assert_eq!(s.mapped_footprint_end, 0x10000);
    let tl = &report.timeline;
    assert_eq!(tl.footprint.last(), Some(&(8192 + 4096)));
    assert_eq!(tl.mapped_footprint.last(), Some(&0x10000));
    assert_eq!(tl.resident.last(), Some(&140_000));
}

/// Check that a trace without rss rows keeps the mapped footprint and says so.
#[test]
fn mapped_footprint_without_rss_rows() {
    let report = build(&layout_rows());
    let s = Summary::from_report(&report);
    assert_eq!(s.footprint_source, "mapped");
    assert!(!report.trace.footprint_resident);
    assert_eq!(s.peak_resident_bytes, None);
    assert_eq!(s.peak_footprint_bytes, s.peak_mapped_footprint_bytes);
    assert_eq!(s.footprint_at_peak_live, 0x10000);
}
