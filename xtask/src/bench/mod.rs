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

mod floor;

#[derive(clap::Args)]
pub struct Args {
    /// malloc/free pairs per churn run.
    #[arg(long, default_value_t = 2_000_000)]
    pub pairs: u64,
    /// Interleaved rounds of each configuration.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Only these benchmarks, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = ["native", "go", "python", "cheap", "analysis", "floor"])]
    pub only: Vec<String>,
    /// Events in the synthetic trace of the analysis benchmark.
    #[arg(long, default_value_t = 50_000_000)]
    pub analysis_events: u64,
    /// Another `alloctrace` binary (e.g. a release build of an older commit) that the native
    /// benchmark also runs without stacks, and the Go benchmark with and without stacks, in the
    /// same interleaved rounds: its cost per event beside this build's.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

fn bench_dir() -> PathBuf {
    util::target_dir().join("bench")
}

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

/// Compiles the workspace's C file `src` (a path from the workspace root) with `-O2` and
/// `flags` into the bench directory as `name`.
fn build_c(src: &str, name: &str, flags: &[&str]) -> anyhow::Result<PathBuf> {
    let bin = bench_dir().join(name);
    util::run(
        Command::new("gcc")
            .arg("-O2")
            .args(flags)
            .arg("-o")
            .arg(&bin)
            .arg(util::workspace().join(src)),
    )?;
    Ok(bin)
}

fn build_churn() -> anyhow::Result<PathBuf> {
    build_c(
        "tracer/tests/programs/churn.c",
        "churn",
        &["-fno-omit-frame-pointer"],
    )
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
    /// The traced command's own CPU seconds (run.json `target`, from `wait4`); `None` from
    /// builds that predate it.
    target_cpu_s: Option<f64>,
}

fn run_alloctrace(
    alloctrace: &Path,
    churn: &Path,
    pairs: u64,
    stacks: bool,
) -> anyhow::Result<Traced> {
    run_alloctrace_with(
        alloctrace,
        churn,
        pairs,
        &[if stacks { "--stacks" } else { "--no-stacks" }],
    )
}

fn run_alloctrace_with(
    alloctrace: &Path,
    churn: &Path,
    pairs: u64,
    flags: &[&str],
) -> anyhow::Result<Traced> {
    let command = [churn.to_owned(), PathBuf::from(pairs.to_string())];
    let (stdout, mut traced) = record_traced(alloctrace, &command, flags, &[])?;
    traced.ns_per_pair = ns_per_pair(&stdout)?;
    Ok(traced)
}

/// Records `command` with alloctrace and `flags` into the bench trace directory; returns the
/// program's stdout and the trace's figures from run.json (`ns_per_pair` left 0).
fn record_traced(
    alloctrace: &Path,
    command: &[PathBuf],
    flags: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(Vec<u8>, Traced)> {
    let dir = bench_dir().join("trace");
    let out = Command::new(alloctrace)
        .args(["record", "-q", "--force"])
        .args(flags)
        .arg("-o")
        .arg(&dir)
        .arg("--")
        .args(command)
        .envs(env.iter().copied())
        .output()?;
    wait_for_release(alloctrace)?;
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
    let cpu = |usage: &Value| Some(usage["cpu_user_s"].as_f64()? + usage["cpu_system_s"].as_f64()?);
    Ok((
        out.stdout,
        Traced {
            ns_per_pair: 0.0,
            lost: run["lost_total"].as_u64().unwrap_or(0),
            events: run["events_written"].as_u64().unwrap_or(0),
            bytes,
            cpu_s: cpu(tracer).unwrap_or(0.0),
            rss: tracer["max_rss_bytes"].as_u64().unwrap_or(0),
            target_cpu_s: cpu(&run["target"]),
        },
    ))
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
    refuse_bpf_stats()?;
    util::build_release()?;
    fs::create_dir_all(bench_dir())?;
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    if wanted("native") {
        native(args)?;
    }
    if wanted("go") || wanted("python") || wanted("cheap") {
        crate::targets::run(&crate::targets::Args::default())?;
    }
    if wanted("go") {
        go(args)?;
    }
    if wanted("python") {
        python(args)?;
    }
    if wanted("cheap") {
        cheap(args)?;
    }
    if wanted("analysis") {
        analysis(args)?;
    }
    if wanted("floor") {
        floor::run(args)?;
    }
    Ok(())
}

/// With `kernel.bpf_stats_enabled` set, the kernel reads the clock twice around every eBPF
/// program run: a probe hit cost ~180–260 ns more here (docs/benchmarks.md, "Where the time
/// goes"), which would be counted as alloctrace's cost. A profiling session easily leaves it set.
fn refuse_bpf_stats() -> anyhow::Result<()> {
    const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    if fs::read_to_string(STATS).is_ok_and(|value| value.trim() != "0") {
        bail!(
            "kernel.bpf_stats_enabled is on: it adds to every probe hit and would inflate every \
             figure; run `sysctl kernel.bpf_stats_enabled=0` first"
        );
    }
    Ok(())
}

fn native(args: &Args) -> anyhow::Result<()> {
    let churn = build_churn()?;
    let alloctrace = util::alloctrace_bin();
    let (mut untraced, mut traced, mut with_stacks, mut bpftrace) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut no_follow, mut baseline) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        eprintln!("bench: round {round}/{}", args.rounds);
        untraced.push(run_untraced(&churn, args.pairs)?);
        traced.push(run_alloctrace(&alloctrace, &churn, args.pairs, false)?);
        if let Some(other) = &args.baseline {
            baseline.push(run_alloctrace(other, &churn, args.pairs, false)?.ns_per_pair);
        }
        // The top process only: its probes are its own (the kernel filters by process), where
        // by default they are every process's and the eBPF programs check the traced-process
        // array first.
        no_follow.push(
            run_alloctrace_with(
                &alloctrace,
                &churn,
                args.pairs,
                &["--no-stacks", "--no-follow"],
            )?
            .ns_per_pair,
        );
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
    let with_no_follow = median(&mut no_follow);
    let added_no_follow = (with_no_follow - base) / 2.0;
    let added = (with_alloctrace - base) / 2.0;
    let added_bpftrace = (with_bpftrace - base) / 2.0;
    let lost: u64 = traced.iter().map(|t| t.lost).sum();
    let events: u64 = traced.iter().map(|t| t.events).sum();
    let bytes: u64 = traced.iter().map(|t| t.bytes).sum();
    let cpu: f64 = traced.iter().map(|t| t.cpu_s).sum();
    let rss = traced.iter().map(|t| t.rss).max().unwrap_or(0);
    let added_baseline = (!baseline.is_empty()).then(|| (median(&mut baseline) - base) / 2.0);
    let results = serde_json::json!({
        "baseline": args.baseline,
        "baseline_ns_added_per_event": added_baseline,
        "alloctrace_over_baseline": added_baseline.map(|b| added / b),
        "pairs_per_run": args.pairs,
        "rounds": args.rounds,
        "untraced_ns_per_pair": base,
        "alloctrace_ns_per_pair": with_alloctrace,
        "bpftrace_ns_per_pair": with_bpftrace,
        "alloctrace_ns_added_per_event": added,
        "bpftrace_ns_added_per_event": added_bpftrace,
        "bpftrace_over_alloctrace": added_bpftrace / added,
        "alloctrace_no_follow_ns_per_pair": with_no_follow,
        "alloctrace_no_follow_ns_added_per_event": added_no_follow,
        "follow_over_no_follow": added / added_no_follow,
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
        "  alloctrace --no-follow      {with_no_follow:8.1} ns/pair  → {added_no_follow:6.0} ns added per event"
    );
    println!(
        "  following / --no-follow     {:8.3}×",
        added / added_no_follow
    );
    if let (Some(b), Some(path)) = (added_baseline, &args.baseline) {
        println!(
            "  baseline (--no-stacks)      {:8.1} ns/pair  → {b:6.0} ns added per event ({})",
            base + 2.0 * b,
            path.display()
        );
        println!("  alloctrace / baseline       {:8.3}×", added / b);
    }
    println!(
        "  alloctrace with stacks      {stacks_ns:8.1} ns/pair  → {:6.0} ns added per event",
        (stacks_ns - base) / 2.0
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

/// A workload target's own JSON line: (elapsed_ms, objects).
fn target_line(stdout: &[u8]) -> anyhow::Result<(f64, u64)> {
    let line = churn_line(stdout)?;
    Ok((
        line["elapsed_ms"].as_f64().context("elapsed_ms")?,
        line["objects"].as_u64().context("objects")?,
    ))
}

/// Records `command` with alloctrace and `flags`; returns (the program's elapsed ms, trace
/// summary).
fn traced_target(
    alloctrace: &Path,
    command: &[PathBuf],
    flags: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(f64, Traced)> {
    let (stdout, traced) = record_traced(alloctrace, command, flags, env)?;
    Ok((target_line(&stdout)?.0, traced))
}

fn untraced_target(command: &[PathBuf], env: &[(&str, &str)]) -> anyhow::Result<(f64, u64)> {
    let out = Command::new(&command[0])
        .args(&command[1..])
        .envs(env.iter().copied())
        .output()?;
    target_line(&out.stdout)
}

/// Waits until no process runs `alloctrace` any more: `record` exits before its probes are
/// released (a background copy of it releases them, ~0.1 s a probe), and a run started
/// meanwhile from the same files would hit them. Works for baseline builds that predate
/// `record --wait-detach` too.
fn wait_for_release(alloctrace: &Path) -> anyhow::Result<()> {
    let exe = fs::canonicalize(alloctrace)?;
    let started = std::time::Instant::now();
    let running = || {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| fs::read_link(entry.path().join("exe")).is_ok_and(|target| target == exe))
    };
    while running() {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            bail!(
                "{} still runs 2 minutes after its recording ended",
                exe.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// CPU seconds (user + system) of every child process waited for so far, their own waited-for
/// children included.
fn children_cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    })
}

/// One configuration's runs: the program's own elapsed ms and its process's CPU ms.
#[derive(Default)]
struct GoRuns {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    /// Traced runs: the CPU figure the way it was taken before run.json had `target`: the
    /// children's CPU minus the tracer's from run.json (which also charged the traced process
    /// with the tracer's work after writing run.json).
    cpu_by_subtraction_ms: Vec<f64>,
    /// Some traced run's `cpu_ms` is by subtraction (a build without run.json `target`).
    subtracted: bool,
    events: u64,
    lost: u64,
}

impl GoRuns {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "wall_ms_runs": self.wall_ms, "cpu_ms_runs": self.cpu_ms,
            "cpu_by_subtraction_ms_runs": self.cpu_by_subtraction_ms,
            "events": self.events, "events_lost": self.lost,
        })
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Go allocation churn: the Go 1.27 and Go 1.19 targets' `churn`, untraced, traced without
/// stacks and traced with stacks, interleaved in each round.
///
/// Two figures per configuration. Wall: the program's own elapsed time of its loop. CPU: the
/// program's process CPU time (user + system, where the kernel's breakpoint handling and the
/// eBPF programs are charged): `RUSAGE_CHILDREN` around an untraced run, and for a traced run
/// what `wait4` gave the tracer when it reaped the program (run.json `target`). Older builds
/// (a `--baseline`) do not record that: theirs is `RUSAGE_CHILDREN` around the recording minus
/// the tracer's CPU in run.json, which also charges the program with the tracer's work after
/// writing run.json; that figure is printed for every traced run, for comparison. On a host
/// shared with other work the wall figure also grows with the time the traced run is preempted
/// (it runs several times longer), the CPU figure much less.
fn go(args: &Args) -> anyhow::Result<()> {
    let alloctrace = util::alloctrace_bin();
    // (label, tracer binary, flags); no flags: untraced. `--baseline` adds an older build's
    // runs, with and without stacks, to the same interleaved rounds, for a side-by-side
    // comparison.
    let mut modes: Vec<(&str, &Path, &[&str])> = vec![
        ("untraced", &alloctrace, &[]),
        ("no stacks", &alloctrace, &["--no-stacks"]),
        ("stacks", &alloctrace, &["--stacks"]),
    ];
    if let Some(baseline) = &args.baseline {
        modes.push(("baseline no stacks", baseline, &["--no-stacks"]));
        modes.push(("baseline stacks", baseline, &["--stacks"]));
    }
    let versions = ["alloc-go1.27", "alloc-go1.19"];
    let mut runs: Vec<Vec<GoRuns>> = versions
        .iter()
        .map(|_| modes.iter().map(|_| GoRuns::default()).collect())
        .collect();
    for round in 1..=args.rounds {
        eprintln!("bench go: round {round}/{}", args.rounds);
        for (v, bin) in versions.iter().enumerate() {
            let command = [
                crate::targets::out_dir().join("bin").join(bin),
                "churn".into(),
                "--size".into(),
                "300000".into(),
            ];
            // Each round starts at the next mode, so that every mode runs in every position and
            // no drift within a round favours one. (Before `wait_for_release`, a run started
            // while the previous recording's probes were still attached paid for them: with
            // this build as its own baseline, "baseline no stacks", run right after "stacks",
            // measured 844 (Go 1.27) and 351 (Go 1.19) ns per allocation more than "no stacks".)
            for m in (0..modes.len()).map(|i| (i + round) % modes.len()) {
                let (_, tracer, flags) = modes[m];
                let before = children_cpu_s();
                let r = &mut runs[v][m];
                if flags.is_empty() {
                    r.wall_ms.push(untraced_target(&command, &[])?.0);
                    r.cpu_ms.push((children_cpu_s() - before) * 1e3);
                } else {
                    let (wall, traced) = traced_target(tracer, &command, flags, &[])?;
                    let by_subtraction = (children_cpu_s() - before - traced.cpu_s).max(0.0);
                    r.wall_ms.push(wall);
                    r.cpu_ms
                        .push(traced.target_cpu_s.unwrap_or(by_subtraction) * 1e3);
                    r.cpu_by_subtraction_ms.push(by_subtraction * 1e3);
                    r.subtracted |= traced.target_cpu_s.is_none();
                    r.events = traced.events;
                    r.lost += traced.lost;
                }
            }
        }
    }
    let mut results = serde_json::Map::new();
    println!(
        "go churn (churn --size 300000, {} interleaved rounds, medians [min–max])",
        args.rounds
    );
    for (v, bin) in versions.iter().enumerate() {
        let base = &runs[v][0];
        let (base_wall, base_cpu) = (
            median(&mut base.wall_ms.clone()),
            median(&mut base.cpu_ms.clone()),
        );
        let mut entry = serde_json::json!({
            "program": format!("{bin} churn --size 300000"),
            "untraced": base.json(),
        });
        println!("  {bin}: untraced {base_wall:8.1} ms wall, {base_cpu:8.1} ms CPU");
        for (m, (mode, _, _)) in modes.iter().enumerate().skip(1) {
            let r = &runs[v][m];
            let (wall, cpu) = (
                median(&mut r.wall_ms.clone()),
                median(&mut r.cpu_ms.clone()),
            );
            let n = r.events.max(1) as f64;
            let (wall_added, cpu_added) =
                ((wall - base_wall) * 1e6 / n, (cpu - base_cpu) * 1e6 / n);
            let ((wlo, whi), (clo, chi)) = (range(&r.wall_ms), range(&r.cpu_ms));
            let subtracted_added =
                (median(&mut r.cpu_by_subtraction_ms.clone()) - base_cpu) * 1e6 / n;
            let mut json = r.json();
            json["wall_ns_added_per_allocation"] = wall_added.into();
            json["cpu_ns_added_per_allocation"] = cpu_added.into();
            json["cpu_by_subtraction_ns_added_per_allocation"] = subtracted_added.into();
            entry[mode.replace(' ', "_")] = json;
            let source = if r.subtracted {
                "by subtraction"
            } else {
                "wait4"
            };
            println!(
                "    {mode:18}: {wall:7.1} ms wall [{wlo:.1}–{whi:.1}] → {wall_added:5.0} ns added per allocation; \
                 {cpu:7.1} ms CPU ({source}) [{clo:.1}–{chi:.1}] → {cpu_added:5.0} ns \
                 ({subtracted_added:.0} by subtraction); {} events, {} lost",
                r.events, r.lost
            );
        }
        for (ours, theirs) in [(1, 3), (2, 4)]
            .into_iter()
            .filter(|&(_, b)| b < modes.len())
        {
            let paired = Paired::of(&runs[v][ours], &runs[v][theirs]);
            let source = match runs[v][ours].subtracted || runs[v][theirs].subtracted {
                true => "by subtraction",
                false => "wait4",
            };
            println!(
                "    {} against the baseline, round by round: {:.0} ns less per allocation \
                 (CPU {source}, median), fewer in {} of {} rounds",
                modes[ours].0, paired.median_ns_less, paired.rounds_less, paired.rounds
            );
            entry[format!("{}_against_baseline", modes[ours].0.replace(' ', "_"))] = serde_json::json!({
                "median_cpu_ns_less_per_allocation": paired.median_ns_less,
                "rounds_less": paired.rounds_less,
                "rounds": paired.rounds,
            });
        }
        results.insert((*bin).to_owned(), entry);
    }
    fs::write(
        bench_dir().join("go.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(results))? + "\n",
    )?;
    Ok(())
}

/// One build's runs against another's in the same rounds: each round's difference, so that the
/// host's drift between rounds (it moves by half within a day) cancels out.
struct Paired {
    median_ns_less: f64,
    rounds_less: usize,
    rounds: usize,
}

impl Paired {
    /// Like is compared with like: by subtraction when either build measured that way.
    fn of(ours: &GoRuns, theirs: &GoRuns) -> Paired {
        let n = ours.events.max(1) as f64;
        let cpu = |runs: &GoRuns| match ours.subtracted || theirs.subtracted {
            true => runs.cpu_by_subtraction_ms.clone(),
            false => runs.cpu_ms.clone(),
        };
        let mut less: Vec<f64> = cpu(ours)
            .iter()
            .zip(&cpu(theirs))
            .map(|(o, t)| (t - o) * 1e6 / n)
            .collect();
        Paired {
            rounds_less: less.iter().filter(|&&d| d > 0.0).count(),
            rounds: less.len(),
            median_ns_less: median(&mut less),
        }
    }
}

/// Python churn: untraced, alloctrace, and memray with --trace-python-allocators.
fn python(args: &Args) -> anyhow::Result<()> {
    let venv_python = crate::toolchains::ensure_venv_at(
        &util::tools_dir().join("bench-venv"),
        &["memray==1.20.0"],
    )?;
    let script = crate::targets::out_dir().join("bin/alloc-python.py");
    let workload = ["churn", "--size", "200000"];
    let command: Vec<PathBuf> = std::iter::once(venv_python.clone())
        .chain(std::iter::once(script.clone()))
        .chain(workload.iter().map(PathBuf::from))
        .collect();
    let alloctrace = util::alloctrace_bin();
    let memray_out = bench_dir().join("memray.bin");
    let (mut base, mut ours, mut memray) = (Vec::new(), Vec::new(), Vec::new());
    let mut frames = Vec::new();
    let mut frames_lost = 0u64;
    let (mut events, mut lost, mut bytes, mut memray_bytes) = (0u64, 0u64, 0u64, 0u64);
    for round in 1..=args.rounds.min(3) {
        eprintln!("bench python: round {round}");
        base.push(untraced_target(&command, &[])?.0);
        let (ms, t) = traced_target(&alloctrace, &command, &["--no-stacks"], &[])?;
        ours.push(ms);
        (events, bytes) = (t.events, t.bytes);
        lost += t.lost;
        let (ms, t) = traced_target(&alloctrace, &command, &["--python-frames"], &[])?;
        frames.push(ms);
        frames_lost += t.lost;
        let _ = fs::remove_file(&memray_out);
        let out = Command::new(&venv_python)
            .args([
                "-m",
                "memray",
                "run",
                "--trace-python-allocators",
                "--quiet",
                "-o",
            ])
            .arg(&memray_out)
            .arg(&script)
            .args(workload)
            .output()?;
        if !out.status.success() {
            bail!("memray failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        memray.push(target_line(&out.stdout)?.0);
        memray_bytes = fs::metadata(&memray_out).map(|m| m.len()).unwrap_or(0);
    }
    let (b, o, m) = (median(&mut base), median(&mut ours), median(&mut memray));
    let f = median(&mut frames);
    let per = |ms: f64| (ms - b) * 1e6 / events.max(1) as f64;
    let results = serde_json::json!({
        "program": format!(
            "alloc-python.py churn --size 200000 (CPython {})",
            crate::toolchains::python_version(&venv_python).unwrap_or_default()
        ),
        "untraced_ms": b, "alloctrace_ms": o, "memray_ms": m, "events": events,
        "alloctrace_ns_added_per_event": per(o), "memray_ns_added_per_event": per(m),
        "alloctrace_events_lost": lost,
        "alloctrace_python_frames_ms": f,
        "alloctrace_python_frames_ns_added_per_event": per(f),
        "alloctrace_python_frames_events_lost": frames_lost,
        "alloctrace_bytes_per_event": bytes as f64 / events.max(1) as f64,
        "memray_bytes_per_event": memray_bytes as f64 / events.max(1) as f64,
    });
    fs::write(
        bench_dir().join("python.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    println!(
        "python churn (alloc-python.py churn --size 200000, medians; per event = per alloctrace row)"
    );
    println!("  untraced   {b:8.1} ms");
    println!(
        "  alloctrace {o:8.1} ms → {:6.0} ns added per event, {lost} lost, {:.2} B/event",
        per(o),
        bytes as f64 / events.max(1) as f64
    );
    println!(
        "  alloctrace --python-frames {f:8.1} ms → {:6.0} ns added per event, {frames_lost} lost",
        per(f)
    );
    println!(
        "  memray     {m:8.1} ms → {:6.0} ns added per event, {:.2} B/event",
        per(m),
        memray_bytes as f64 / events.max(1) as f64
    );
    Ok(())
}

/// The cheap recording mode, `record --events gc,rss` (GC-cycle, stop-the-world and collection
/// probes plus resident-memory sampling), against untraced runs of a Go and a Python workload,
/// interleaved in each round. Two figures: the program's own elapsed time of its loop, and the
/// whole command's wall time (for the traced run, `alloctrace record` from start to exit:
/// loading the eBPF programs and finding the probes included).
fn cheap(args: &Args) -> anyhow::Result<()> {
    let alloctrace = util::alloctrace_bin();
    let bin = crate::targets::out_dir().join("bin");
    let workloads: [(&str, Vec<PathBuf>); 2] = [
        (
            "alloc-go1.27 churn --size 300000",
            vec![
                bin.join("alloc-go1.27"),
                "churn".into(),
                "--size".into(),
                "300000".into(),
            ],
        ),
        (
            "alloc-python.py churn --size 200000 (CPython 3.11.7)",
            vec![
                crate::toolchains::python(),
                bin.join("alloc-python.py"),
                "churn".into(),
                "--size".into(),
                "200000".into(),
            ],
        ),
    ];
    // [workload][untraced, traced] → (own elapsed ms, command wall ms) per round.
    let mut runs = vec![[(Vec::new(), Vec::new()), (Vec::new(), Vec::new())]; workloads.len()];
    let mut samples = vec![0u64; workloads.len()];
    let mut lost = vec![0u64; workloads.len()];
    for round in 1..=args.rounds {
        eprintln!("bench cheap: round {round}/{}", args.rounds);
        for (w, (_, command)) in workloads.iter().enumerate() {
            let start = std::time::Instant::now();
            let own = untraced_target(command, &[])?.0;
            let wall = start.elapsed().as_secs_f64() * 1e3;
            runs[w][0].0.push(own);
            runs[w][0].1.push(wall);
            let start = std::time::Instant::now();
            let (own, traced) = traced_target(&alloctrace, command, &["--events", "gc,rss"], &[])?;
            let wall = start.elapsed().as_secs_f64() * 1e3;
            runs[w][1].0.push(own);
            runs[w][1].1.push(wall);
            samples[w] = traced.events;
            lost[w] += traced.lost;
        }
    }
    println!(
        "cheap mode, record --events gc,rss ({} interleaved rounds, medians [min–max])",
        args.rounds
    );
    let mut results = serde_json::Map::new();
    for (w, (name, _)) in workloads.iter().enumerate() {
        let [(base_own, base_wall), (own, wall)] = &runs[w];
        let m = |v: &Vec<f64>| median(&mut v.clone());
        let added = |traced: f64, base: f64| 100.0 * (traced / base - 1.0);
        let (bo, bw, to, tw) = (m(base_own), m(base_wall), m(own), m(wall));
        let ((olo, ohi), (wlo, whi)) = (range(own), range(wall));
        let (blo, bhi) = range(base_own);
        println!("  {name}");
        // The fastest runs too: on a noisy host the minimum is the run least disturbed by
        // anything else, traced or not.
        println!(
            "    untraced: {bo:8.1} ms own [{blo:.1}–{bhi:.1}], {bw:8.1} ms command wall; gc,rss: {to:8.1} ms own [{olo:.1}–{ohi:.1}] (median {:+.1}%, fastest {:+.1}%), {tw:8.1} ms command wall [{wlo:.1}–{whi:.1}] ({:+.1}%); {} rows, {} lost",
            added(to, bo),
            added(olo, blo),
            added(tw, bw),
            samples[w],
            lost[w]
        );
        results.insert(
            (*name).to_owned(),
            serde_json::json!({
                "untraced_own_ms_runs": base_own, "untraced_wall_ms_runs": base_wall,
                "gc_rss_own_ms_runs": own, "gc_rss_wall_ms_runs": wall,
                "own_added_percent": added(to, bo), "wall_added_percent": added(tw, bw),
                "own_added_percent_fastest": added(olo, blo),
                "rows": samples[w], "rows_lost": lost[w],
            }),
        );
    }
    fs::write(
        bench_dir().join("cheap.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(results))?
            + "
",
    )?;
    Ok(())
}

/// Timed runs of the full report in the analysis benchmark (the median is the figure), after
/// one untimed run that warms the page cache.
const REPORT_RUNS: usize = 5;

/// Report throughput and memory on a large synthetic trace, next to DuckDB computing the size
/// histogram and live-bytes timeline on the same files.
fn analysis(args: &Args) -> anyhow::Result<()> {
    let dir = bench_dir().join(format!("synth-{}", args.analysis_events));
    // A cargo subcommand on the analysis crate, release profile.
    let cargo_analysis = |subcommand: &str| {
        let mut command = Command::new(env!("CARGO"));
        command
            .args([subcommand, "--release", "-q", "-p", "alloctrace-analysis"])
            .current_dir(util::workspace());
        command
    };
    // `cargo run` of an example, with the trace directory as argument.
    let example_command = |name: &str| {
        let mut command = cargo_analysis("run");
        command.args(["--example", name, "--"]).arg(&dir);
        command
    };
    if !dir.join("run.json").exists() {
        util::run(example_command("synth").arg(args.analysis_events.to_string()))?;
    }
    let example = |name: &str| -> anyhow::Result<String> {
        let out = example_command(name).output()?;
        anyhow::ensure!(
            out.status.success(),
            "example {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // Built before anything is timed, so no run follows a compile on a busy machine.
    util::run(cargo_analysis("build").arg("--examples"))?;
    // The machine is shared: after a warm-up, the report runs REPORT_RUNS times and the median
    // is the figure, with the range next to it.
    example("report")?;
    let mut seconds = Vec::new();
    let mut report_line = String::new();
    for _ in 0..REPORT_RUNS {
        let stdout = example("report")?;
        report_line = stdout
            .lines()
            .find(|l| l.starts_with("analysed"))
            .context("report printed no `analysed` line")?
            .to_owned();
        seconds.push(
            report_line
                .split(" in ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|t| t.parse::<f64>().ok())
                .context("no time in the report line")?,
        );
    }
    // `median` sorts the runs: the fastest is first, the slowest last.
    let middle = median(&mut seconds);
    let (fastest, slowest) = (seconds[0], seconds[REPORT_RUNS - 1]);
    let report_line = format!(
        "{report_line}\nmedian of {REPORT_RUNS}: {middle:.2} s, {:.1} M events/s (range {fastest:.2}–{slowest:.2} s)",
        args.analysis_events as f64 / middle / 1e6
    );
    let shared_text = example("shared")?;
    let python = util::tools_dir().join("python-venv/bin/python");
    let duck = Command::new(&python)
        .arg(util::workspace().join("analysis/benches/duckdb_compare.py"))
        .arg(&dir)
        .args(["--threads", "1"])
        .output()?;
    let duck_text = String::from_utf8_lossy(&duck.stdout).into_owned();
    fs::write(
        bench_dir().join("analysis.txt"),
        format!(
            "{report_line}\nalloctrace, each shared aggregation alone:\n{shared_text}duckdb (1 thread):\n{duck_text}"
        ),
    )?;
    println!(
        "analysis ({} synthetic events)\n  alloctrace report: {report_line}\n  alloctrace, each shared aggregation alone:\n{shared_text}  duckdb (1 thread):\n{duck_text}",
        args.analysis_events
    );
    Ok(())
}
