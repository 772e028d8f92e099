//! Resident-memory sampling (`rss` rows) and the cheap recording mode `--events gc,rss`.

use std::process::Command;

use super::common::{
    assert_success, build, counters, event_batches, record, record_with, strings, tempdir,
};

/// Counts of each `event` value in the trace.
pub fn event_counts(dir: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for batch in event_batches(dir) {
        for event in strings(&batch, "event") {
            *counts.entry(event.unwrap_or_default()).or_default() += 1;
        }
    }
    counts
}

/// Check that a program reserving 1 GiB (MAP_NORESERVE) and touching 8 MiB has a peak resident
/// within 2 MiB of its own VmHWM measured untraced, a resident heap footprint of about the 8 MiB
/// it touched, while its mapped footprint (its own labelled figure) is the whole GiB.
#[test]
fn reserve_1gib_touch_8mib() {
    let bin = build("reserve_touch.c", "gcc", &[]);
    let untraced = Command::new(&bin).output().unwrap();
    assert!(untraced.status.success());
    let hwm = counters(&untraced.stdout)["vm_hwm_bytes"].as_u64().unwrap();
    let dir = tempdir();
    assert_success(&record(dir.path(), &[&bin]));
    let run = trace_format::run::RunInfo::read(dir.path()).unwrap();
    assert_eq!(run.events, ["alloc", "syscalls", "gc", "rss"]);
    let sampling = run.rss.as_ref().expect("run.json rss");
    assert_eq!(sampling.interval_ns, 10_000_000);
    assert!(sampling.samples > 0);

    let report = analysis::report::build(dir.path(), &Default::default()).unwrap();
    let s = analysis::summary::Summary::from_report(&report);
    assert_eq!(s.footprint_source, "resident");
    let peak = s.peak_resident_bytes.expect("peak_resident_bytes");
    const MIB: u64 = 1 << 20;
    assert!(
        peak.abs_diff(hwm) <= 2 * MIB,
        "peak resident {peak}, untraced VmHWM {hwm}"
    );
    assert!(s.peak_resident_ns.unwrap() <= s.duration_ns);
    // The heap's resident bytes: the 8 MiB touched, not the GiB reserved.
    assert!(
        (8 * MIB..10 * MIB).contains(&s.peak_footprint_bytes),
        "resident heap peak {}",
        s.peak_footprint_bytes
    );
    assert!(s.peak_mapped_footprint_bytes >= 1 << 30);
    assert_eq!(report.counters.rss_samples, sampling.samples);
}

/// Check that `--rss-interval` sets the period and `--events alloc` records no rss rows, and
/// that such a trace says its footprint is mapped only.
#[test]
fn rss_interval_and_without_rss() {
    let bin = build("reserve_touch.c", "gcc", &[]);
    let dir = tempdir();
    assert_success(&record_with(dir.path(), &["--rss-interval", "2"], &[&bin]));
    let run = trace_format::run::RunInfo::read(dir.path()).unwrap();
    let sampling = run.rss.unwrap();
    assert_eq!(sampling.interval_ns, 2_000_000);
    // The program holds its peak 200 ms: at a 2 ms period, dozens of samples.
    assert!(sampling.samples >= 50, "{} samples", sampling.samples);

    let dir = tempdir();
    assert_success(&record_with(
        dir.path(),
        &["--events", "alloc,syscalls"],
        &[&bin],
    ));
    let run = trace_format::run::RunInfo::read(dir.path()).unwrap();
    assert_eq!(run.events, ["alloc", "syscalls"]);
    assert!(run.rss.is_none());
    assert!(!event_counts(dir.path()).contains_key("rss"));
    let report = analysis::report::build(dir.path(), &Default::default()).unwrap();
    let s = analysis::summary::Summary::from_report(&report);
    assert_eq!(s.footprint_source, "mapped");
    assert_eq!(s.peak_resident_bytes, None);
    assert_eq!(s.peak_footprint_bytes, s.peak_mapped_footprint_bytes);
}
