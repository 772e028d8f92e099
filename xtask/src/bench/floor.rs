//! `cargo xtask bench --only floor`: what one uprobe hit costs on this kernel before any work of
//! alloctrace's, the floor under every per-allocation figure of the other benchmarks.
//!
//! `probe_floor.c` calls a function whose first instruction is probed, with an eBPF program
//! that returns at once: unprobed, through a perf-event uprobe (how aya 0.14, and so
//! alloctrace, attaches), and through a `uprobe_multi` link; on an instruction the kernel
//! emulates after its int3 trap (`push`, like the jcc and nop sites of Go's allocators) and on a
//! 5-byte nop (which Linux 6.18+ turns into a call to a syscall trampoline).

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{Args, bench_dir, build_c, median, range};

const CALLS: &str = "1000000";

/// (attach, probed instruction); the first is unprobed.
const CONFIGS: [(&str, &str); 5] = [
    ("none", "push"),
    ("perf", "push"),
    ("multi", "push"),
    ("perf", "nop5"),
    ("multi", "nop5"),
];

pub fn run(args: &Args) -> anyhow::Result<()> {
    // Without CET's `endbr64` at the functions' entries, which the kernel single-steps.
    let bin = build_c(
        "xtask/src/bench/probe_floor.c",
        "probe_floor",
        &["-fcf-protection=none"],
    )?;
    let mut runs: Vec<Vec<f64>> = CONFIGS.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        eprintln!("bench floor: round {round}/{}", args.rounds);
        // Each round starts at the next configuration, as in the Go benchmark.
        for c in (0..CONFIGS.len()).map(|i| (i + round) % CONFIGS.len()) {
            runs[c].push(ns_per_call(&bin, CONFIGS[c])?);
        }
    }
    let base = median(&mut runs[0].clone());
    println!(
        "probe floor (a call whose first instruction is probed, {CALLS} calls, an eBPF program \
         that returns at once; {} interleaved rounds, medians [min–max] of process CPU per call)",
        args.rounds
    );
    let mut results = serde_json::Map::new();
    for (c, (attach, insn)) in CONFIGS.iter().enumerate() {
        let ns = median(&mut runs[c].clone());
        let (lo, hi) = range(&runs[c]);
        let added = ns - base;
        println!("  {attach:5} {insn:4}: {ns:7.1} ns [{lo:.1}–{hi:.1}] → {added:5.0} ns per hit");
        results.insert(
            format!("{attach}_{insn}"),
            serde_json::json!({ "ns_per_call_runs": runs[c], "ns_added_per_hit": added }),
        );
    }
    std::fs::write(
        bench_dir().join("floor.json"),
        serde_json::to_string_pretty(&Value::Object(results))? + "\n",
    )?;
    Ok(())
}

fn ns_per_call(bin: &Path, (attach, insn): (&str, &str)) -> anyhow::Result<f64> {
    let out = Command::new(bin).args([attach, insn, CALLS]).output()?;
    if !out.status.success() {
        bail!(
            "probe_floor {attach} {insn}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("probe_floor {attach} {insn}: no JSON line"))?;
    line["ns_per_call"]
        .as_f64()
        .context("probe_floor: ns_per_call missing")
}
