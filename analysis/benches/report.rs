//! Report throughput (events/s) and peak memory on synthetic traces.
//!
//! `cargo bench -p alloctrace-analysis --bench report` generates a native trace of
//! `ALLOCTRACE_BENCH_EVENTS` rows (default 2 000 000; about a minute in all) with the real
//! writer, under `ALLOCTRACE_BENCH_DIR` (default `target/bench-traces`, reused when present),
//! measures `report::build` with criterion, then prints the peak RSS of one build for that
//! trace and for one a quarter of its size: equal numbers show that memory does not grow with
//! trace length (the live set of both is the same, capped by the generator).
//!
//! For the published ≥ 50 M-event figure, generate once and time one build:
//! `cargo run --release -p alloctrace-analysis --example synth -- /tmp/t50m 50000000` then
//! `cargo run --release -p alloctrace-analysis --example report -- /tmp/t50m`.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use analysis::{
    report::{self, Options},
    synth::{Flavor, Synth},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use trace_format::run::RunInfo;

fn events() -> u64 {
    env::var("ALLOCTRACE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(2_000_000)
}

/// A native synthetic trace of about `events` rows, generated once and reused.
fn trace(events: u64) -> PathBuf {
    let root = env::var_os("ALLOCTRACE_BENCH_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-traces"),
        PathBuf::from,
    );
    let dir = root.join(format!("native-{events}"));
    let complete = RunInfo::read(&dir).is_ok_and(|run| run.events_written >= events);
    if !complete {
        let _ = fs::remove_dir_all(&dir);
        eprintln!("generating {events} events in {}", dir.display());
        Synth {
            events,
            flavor: Flavor::Native,
            ..Synth::default()
        }
        .write(&dir)
        .expect("cannot write the benchmark trace");
    }
    dir
}

fn status_kib(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak RSS (MiB) of one report build: the high-water mark is reset first (clear_refs 5).
fn peak_rss_mib(dir: &Path) -> f64 {
    let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let report = report::build(dir, &Options::default()).expect("report failed");
    let peak = status_kib("VmHWM:") as f64 / 1024.0;
    drop(report);
    if reset { peak } else { f64::NAN }
}

fn bench(c: &mut Criterion) {
    let events = events();
    let dir = trace(events);
    let quarter = trace(events / 4);
    // Memory first, in a fresh process, the short trace before the long one: glibc keeps freed
    // memory, so the second high-water mark can only be higher, never lower, than its own.
    let on_disk = |d: &Path| {
        fs::read_dir(d.join("events"))
            .map(|es| {
                es.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>()
            })
            .unwrap_or(0) as f64
            / (1 << 20) as f64
    };
    let small = peak_rss_mib(&quarter);
    let large = peak_rss_mib(&dir);
    let rows = RunInfo::read(&dir)
        .map(|r| r.events_written)
        .unwrap_or(events);
    println!(
        "peak RSS of one report build: {small:.1} MiB for {} events ({:.1} MiB of Parquet), {large:.1} MiB for {rows} events ({:.1} MiB of Parquet)",
        events / 4,
        on_disk(&quarter),
        on_disk(&dir)
    );

    let mut group = c.benchmark_group("report");
    group.throughput(Throughput::Elements(rows));
    group.sample_size(10);
    group.bench_function(format!("build/{rows}-events"), |b| {
        b.iter(|| report::build(&dir, &Options::default()).expect("report failed"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
