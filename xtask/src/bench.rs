//! `cargo xtask bench`: what tracing costs, measured side by side in one run.
//!
//! The machine is shared and noisy, so every configuration runs in interleaved rounds
//! (untraced, alloctrace, bpftrace, untraced, ...) and the report uses medians and ratios taken
//! within the same run, never absolute numbers from different runs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{setup, util};

#[derive(clap::Args)]
pub struct Args {
    /// malloc/free pairs per churn run.
    #[arg(long, default_value_t = 2_000_000)]
    pub pairs: u64,
    /// Interleaved rounds of each configuration.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

fn bench_dir() -> PathBuf {
    util::target_dir().join("bench")
}

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn build_churn() -> anyhow::Result<PathBuf> {
    let src = util::workspace().join("tracer/tests/programs/churn.c");
    let bin = bench_dir().join("churn");
    util::run(
        Command::new("gcc")
            .args(["-O2", "-fno-omit-frame-pointer", "-o"])
            .arg(&bin)
            .arg(&src),
    )?;
    Ok(bin)
}

/// The churn program's own JSON line.
fn churn_line(stdout: &[u8]) -> anyhow::Result<Value> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no JSON line in {text:?}"))?;
    Ok(serde_json::from_str(line)?)
}

fn ns_per_pair(stdout: &[u8]) -> anyhow::Result<f64> {
    churn_line(stdout)?["ns_per_pair"]
        .as_f64()
        .context("ns_per_pair missing")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

struct Traced {
    ns_per_pair: f64,
    lost: u64,
    events: u64,
    bytes: u64,
    cpu_s: f64,
    rss: u64,
}

fn run_alloctrace(
    alloctrace: &Path,
    churn: &Path,
    pairs: u64,
    stacks: bool,
) -> anyhow::Result<Traced> {
    let dir = bench_dir().join("trace");
    let out = Command::new(alloctrace)
        .args([
            "record",
            "-q",
            "--force",
            if stacks { "--stacks" } else { "--no-stacks" },
            "-o",
        ])
        .arg(&dir)
        .arg("--")
        .arg(churn)
        .arg(pairs.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "alloctrace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run: Value = serde_json::from_str(&fs::read_to_string(dir.join("run.json"))?)?;
    let bytes = run["segments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| fs::metadata(dir.join(s.as_str()?)).ok())
        .map(|m| m.len())
        .sum();
    let tracer = &run["tracer"];
    Ok(Traced {
        ns_per_pair: ns_per_pair(&out.stdout)?,
        lost: run["lost_total"].as_u64().unwrap_or(0),
        events: run["events_written"].as_u64().unwrap_or(0),
        bytes,
        cpu_s: tracer["cpu_user_s"].as_f64().unwrap_or(0.0)
            + tracer["cpu_system_s"].as_f64().unwrap_or(0.0),
        rss: tracer["max_rss_bytes"].as_u64().unwrap_or(0),
    })
}

fn run_bpftrace(churn: &Path, pairs: u64) -> anyhow::Result<f64> {
    // What a bpftrace user would write to count the same calls.
    let script = format!(
        "uprobe:{LIBC}:malloc {{ @malloc = count(); }} uprobe:{LIBC}:free {{ @free = count(); }}"
    );
    let out = Command::new("bpftrace")
        .args(["-e", &script, "-c"])
        .arg(format!("{} {pairs}", churn.display()))
        .output()
        .context("running bpftrace (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!("bpftrace failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    ns_per_pair(&out.stdout)
}

fn run_untraced(churn: &Path, pairs: u64) -> anyhow::Result<f64> {
    let out = Command::new(churn).arg(pairs.to_string()).output()?;
    ns_per_pair(&out.stdout)
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    setup::run(&setup::Args::default())?;
    if !util::is_root() {
        bail!("the benchmark loads eBPF programs: run it as root");
    }
    util::build_release()?;
    fs::create_dir_all(bench_dir())?;
    let churn = build_churn()?;
    let alloctrace = util::alloctrace_bin();
    let (mut untraced, mut traced, mut with_stacks, mut bpftrace) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        eprintln!("bench: round {round}/{}", args.rounds);
        untraced.push(run_untraced(&churn, args.pairs)?);
        traced.push(run_alloctrace(&alloctrace, &churn, args.pairs, false)?);
        with_stacks.push(run_alloctrace(&alloctrace, &churn, args.pairs, true)?);
        bpftrace.push(run_bpftrace(&churn, args.pairs)?);
    }
    let stacks_ns = median(
        &mut with_stacks
            .iter()
            .map(|t| t.ns_per_pair)
            .collect::<Vec<_>>(),
    );
    let base = median(&mut untraced);
    let with_alloctrace = median(&mut traced.iter().map(|t| t.ns_per_pair).collect::<Vec<_>>());
    let with_bpftrace = median(&mut bpftrace);
    let added = (with_alloctrace - base) / 2.0;
    let added_bpftrace = (with_bpftrace - base) / 2.0;
    let lost: u64 = traced.iter().map(|t| t.lost).sum();
    let events: u64 = traced.iter().map(|t| t.events).sum();
    let bytes: u64 = traced.iter().map(|t| t.bytes).sum();
    let cpu: f64 = traced.iter().map(|t| t.cpu_s).sum();
    let rss = traced.iter().map(|t| t.rss).max().unwrap_or(0);
    let results = serde_json::json!({
        "pairs_per_run": args.pairs,
        "rounds": args.rounds,
        "untraced_ns_per_pair": base,
        "alloctrace_ns_per_pair": with_alloctrace,
        "bpftrace_ns_per_pair": with_bpftrace,
        "alloctrace_ns_added_per_event": added,
        "bpftrace_ns_added_per_event": added_bpftrace,
        "bpftrace_over_alloctrace": added_bpftrace / added,
        "alloctrace_with_stacks_ns_per_pair": stacks_ns,
        "alloctrace_with_stacks_ns_added_per_event": (stacks_ns - base) / 2.0,
        "stacks_lost": with_stacks.iter().map(|t| t.lost).sum::<u64>(),
        "events_per_second_sustained": 2e9 / with_alloctrace,
        "events_lost": lost,
        "parquet_bytes_per_event": bytes as f64 / events.max(1) as f64,
        "tracer_cpu_ns_per_event": cpu * 1e9 / events.max(1) as f64,
        "tracer_peak_rss_mib": rss as f64 / (1 << 20) as f64,
    });
    let path = bench_dir().join("native.json");
    fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
    println!(
        "native churn ({} malloc/free pairs per run, {} interleaved rounds, medians)",
        args.pairs, args.rounds
    );
    println!("  untraced                    {base:8.1} ns/pair");
    println!(
        "  alloctrace                  {with_alloctrace:8.1} ns/pair  → {added:6.0} ns added per event"
    );
    println!(
        "  bpftrace (count uprobes)    {with_bpftrace:8.1} ns/pair  → {added_bpftrace:6.0} ns added per event"
    );
    println!(
        "  bpftrace / alloctrace       {:8.2}×",
        added_bpftrace / added
    );
    println!(
        "  events/s sustained          {:8.0}",
        2e9 / with_alloctrace
    );
    println!("  events lost                 {lost:8}");
    println!(
        "  Parquet bytes per event     {:8.2}",
        bytes as f64 / events.max(1) as f64
    );
    println!(
        "  tracer CPU per event        {:8.0} ns",
        cpu * 1e9 / events.max(1) as f64
    );
    println!(
        "  tracer peak RSS             {:8.1} MiB",
        rss as f64 / (1 << 20) as f64
    );
    println!("  (written to {})", path.display());
    Ok(())
}
