//! `cargo xtask suite`: the main job. Sets the machine up, builds alloctrace and the workload
//! targets, records every target × scenario × variant of the manifest twice (the full trace,
//! and a cheap `--events gc,rss` recording for time, GC and resident figures: see
//! [`crate::figures`]), reports each, builds one comparison dashboard per scenario, the
//! findings and the landing page, and prints where to open it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::{figures, findings, landing, setup, targets, toolchains, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// A one-minute version: one variant per language and Rust with mimalloc, three scenarios,
    /// small sizes.
    #[arg(long)]
    pub quick: bool,
    /// Only these languages or runnable ids, comma-separated (e.g. `go,python` or `rust-system`).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these scenarios, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Where to write traces, reports and dashboards (default: target/suite).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The CPython the Python runs use, as `X.Y` (e.g. `3.13`): the one with a symbol table
    /// the tests would find (pyenv, PATH, ALLOCTRACE_TEST_PYTHONS). Default: 3.11, or
    /// ALLOCTRACE_PYTHON.
    #[arg(long, value_name = "X.Y")]
    pub python: Option<String>,
    /// CPython versions that run one Python workload side by side in
    /// `dashboard-python-versions.html`, comma-separated `X.Y`. Default: every full-depth
    /// CPython found (3.11, 3.12, 3.13 on this machine kind); none with --quick.
    #[arg(long, value_delimiter = ',', value_name = "X.Y")]
    pub python_versions: Option<Vec<String>>,
    /// The alloctrace binary to use (already built); default: build and use the release one.
    #[arg(long, value_name = "BIN")]
    pub alloctrace: Option<PathBuf>,
}

/// The landing page's group of the CPython versions runs.
const PYTHON_VERSIONS_GROUP: &str = "python-versions";

/// The workload and scenario the CPython versions are compared on.
const VERSIONS_RUNNABLE: &str = "python-pymalloc";
const VERSIONS_SCENARIO: &str = "binary-trees";

/// The full-depth CPython `X.Y` found, or why there is none.
fn python_for(version: &str, found: &toolchains::installed::Discovery) -> anyhow::Result<PathBuf> {
    let parsed = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some((major, minor)) = parsed else {
        bail!("--python {version}: expected a version such as 3.13");
    };
    match found.version(major, minor) {
        Some(i) => Ok(i.exe.clone()),
        None => bail!(
            "--python {version}: no CPython {major}.{minor} with a symbol table found (searched \
             {}); install one (`PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install \
             {major}.{minor}`) or list it in ALLOCTRACE_TEST_PYTHONS",
            found.searched
        ),
    }
}

/// The runs comparing CPython versions: the Python workload of the main runs, on each version.
fn version_runs(
    manifest: &Value,
    args: &Args,
    found: &toolchains::installed::Discovery,
) -> anyhow::Result<Vec<(String, Run)>> {
    let versions: Vec<String> = match &args.python_versions {
        Some(list) => list.clone(),
        None if args.quick => Vec::new(),
        None => found.full_depth().iter().map(|i| i.minor_text()).collect(),
    };
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let base = Args {
        only: vec![VERSIONS_RUNNABLE.to_owned()],
        scenarios: vec![VERSIONS_SCENARIO.to_owned()],
        quick: args.quick,
        ..Args::default()
    };
    let Some(template) = planned_runs(manifest, &base).into_iter().next() else {
        bail!("the manifest has no {VERSIONS_RUNNABLE} {VERSIONS_SCENARIO} run");
    };
    let mut runs = Vec::new();
    for version in versions {
        let exe = python_for(&version, found)?;
        let mut run = Run {
            id: format!("python{version}-pymalloc"),
            scenario: template.scenario.clone(),
            command: template.command.clone(),
            env: template.env.clone(),
        };
        if let Some(first) = run.command.first_mut() {
            *first = exe.display().to_string();
        }
        runs.push((version, run));
    }
    Ok(runs)
}

/// Sizes traced by the suite: small enough that all 97 runs finish in about twelve minutes on two
/// cores (Go allocations cost ~10 µs each traced: RET probes are single-stepped), the same for
/// every language so the dashboards compare like with like.
fn size(scenario: &str, quick: bool) -> u64 {
    match (scenario, quick) {
        ("binary-trees", false) => 11,
        ("binary-trees", true) => 10,
        ("growth", false) => 250,
        ("growth", true) => 100,
        ("churn" | "fragmentation" | "cache", false) => 150_000,
        ("producer-consumer", false) => 100_000,
        (_, true) => 50_000,
        _ => 100_000,
    }
}

/// mimalloc is in the quick suite for its 1 GiB arena reservation: the test checks that its
/// footprint/live is resident-based (as Go's).
const QUICK_RUNNABLES: &[&str] = &[
    "rust-system",
    "rust-mimalloc",
    "cpp-new",
    "go1.27-gogc100",
    "python-pymalloc",
];
const QUICK_SCENARIOS: &[&str] = &["binary-trees", "churn", "fragmentation"];

/// One run of the suite.
struct Run {
    id: String,
    scenario: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
}

fn planned_runs(manifest: &Value, args: &Args) -> Vec<Run> {
    let mut runs = Vec::new();
    let runnables = manifest["runnables"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in runnables {
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        let lang = r["lang"].as_str().unwrap_or_default().to_owned();
        if args.quick && !QUICK_RUNNABLES.contains(&id.as_str()) {
            continue;
        }
        if !args.only.is_empty() && !args.only.iter().any(|o| *o == lang || *o == id) {
            continue;
        }
        for scenario in r["scenarios"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if args.quick && !QUICK_SCENARIOS.contains(&scenario) {
                continue;
            }
            if !args.scenarios.is_empty() && !args.scenarios.iter().any(|s| s == scenario) {
                continue;
            }
            let threads = if scenario == "producer-consumer" {
                "2"
            } else {
                "1"
            };
            let size = size(scenario, args.quick).to_string();
            let command = r["command"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|a| {
                    a.replace("{scenario}", scenario)
                        .replace("{size}", &size)
                        .replace("{seed}", "1")
                        .replace("{threads}", threads)
                })
                .collect();
            let env = r["env"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            runs.push(Run {
                id: id.clone(),
                scenario: scenario.to_owned(),
                command,
                env,
            });
        }
    }
    runs
}

/// Records one run with `extra` record options; returns the program's own JSON counters.
fn record(alloctrace: &Path, run: &Run, dir: &Path, extra: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(alloctrace)
        .args(["record", "-q", "--force"])
        .args(extra)
        .arg("-o")
        .arg(dir)
        .arg("--")
        .args(&run.command)
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running alloctrace for {}", run.id))?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the program printed no counters")?;
    let mut counters: Value = serde_json::from_str(line)?;
    counters["label"] = Value::String(run.id.clone());
    // The trace carries the workload's own counters: the dashboard divides by work_units.
    let run_json = dir.join("run.json");
    let mut info: Value = serde_json::from_str(&fs::read_to_string(&run_json)?)?;
    info["workload"] = counters.clone();
    fs::write(&run_json, serde_json::to_string_pretty(&info)? + "\n")?;
    Ok(counters)
}

/// Builds each scenario's dashboard once, from every run of that scenario, with `compare`
/// (dirs, output file); returns each scenario's dashboard file name (relative to `out_dir`) or
/// why it failed.
fn build_dashboards<'a>(
    done: &[(String, String, PathBuf)],
    scenarios: &[&'a str],
    out_dir: &Path,
    mut compare: impl FnMut(&[PathBuf], &Path) -> anyhow::Result<()>,
) -> Vec<(&'a str, anyhow::Result<String>)> {
    scenarios
        .iter()
        .map(|&scenario| {
            let dirs: Vec<PathBuf> = done
                .iter()
                .filter(|(s, _, _)| s == scenario)
                .map(|(_, _, d)| d.clone())
                .collect();
            let file = format!("dashboard-{scenario}.html");
            (
                scenario,
                compare(&dirs, &out_dir.join(&file)).map(|()| file),
            )
        })
        .collect()
}

/// The cheap recording's options: GC cycles, pauses and resident memory only, sampled every
/// millisecond: untraced, some suite runs allocate for only a few milliseconds (fragmentation
/// at the quick size: 6 ms), which the default 10 ms period can miss; a sample reads
/// `/proc/PID/statm`, in the tracer's own thread.
const LIGHT_EVENTS: &[&str] = &["--events", "gc,rss", "--rss-interval", "1"];

/// Checks that the suite's runs whose mapped footprint is mostly reservations (mimalloc's
/// arena, Go's heap arenas) have footprint/live computed from resident memory, in every
/// scenario under `out_dir`; fails naming each run that does not.
pub fn check_resident_footprint(out_dir: &Path) -> anyhow::Result<()> {
    let mut checked = 0;
    let mut problems = Vec::new();
    for scenario in fs::read_dir(out_dir)?
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        for run in fs::read_dir(scenario.path())?.flatten() {
            let id = run.file_name().to_string_lossy().into_owned();
            if !(id.starts_with("rust-mimalloc") || id.starts_with("go")) {
                continue;
            }
            let path = run.path().join("summary.json");
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let summary: Value = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            checked += 1;
            if let Some(problem) = figures::footprint_not_resident(&summary) {
                problems.push(format!("{}: {problem}", run.path().display()));
            }
        }
    }
    if checked == 0 {
        bail!("no mimalloc or Go run under {}", out_dir.display());
    }
    if !problems.is_empty() {
        bail!(
            "footprint/live is not resident-based in {} of {checked} runs:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    println!("suite: footprint/live of {checked} mimalloc and Go runs is resident-based");
    Ok(())
}

/// Records `run` twice and reports both: the full trace in `dir` (patterns, sizes, lifetimes,
/// fragmentation), then an `--events gc,rss` recording in `dir/gc-rss` (duration, GC CPU share,
/// pauses and resident memory at near-untraced speed). A failed cheap recording leaves the full
/// trace standing (its figures are then marked traced) and is returned as the second result.
fn record_twice(alloctrace: &Path, run: &Run, dir: &Path) -> anyhow::Result<Option<anyhow::Error>> {
    // The full trace's probes must be gone before the cheap recording starts the same program:
    // left to be released in the background, they would slow it down for seconds.
    record(alloctrace, run, dir, &["--wait-detach"])?;
    alloctrace_cmd(alloctrace, &["report", "-q"], &[dir.to_owned()])?;
    // A cheap recording left by an earlier suite run must not pass for this one's.
    let light_dir = dir.join(figures::LIGHT_DIR);
    let _ = fs::remove_dir_all(&light_dir);
    let result = record(alloctrace, run, &light_dir, LIGHT_EVENTS).and_then(|_| {
        alloctrace_cmd(
            alloctrace,
            &["report", "-q"],
            std::slice::from_ref(&light_dir),
        )
    });
    Ok(result.err())
}

fn alloctrace_cmd(alloctrace: &Path, args: &[&str], paths: &[PathBuf]) -> anyhow::Result<()> {
    let out = Command::new(alloctrace)
        .args(args)
        .args(paths)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    setup::run(&setup::Args::default())?;
    if !util::is_root() {
        bail!("tracing loads eBPF programs: run the suite as root");
    }
    let alloctrace = match &args.alloctrace {
        Some(bin) => bin.clone(),
        None => {
            util::build_release()?;
            util::alloctrace_bin()
        }
    };
    targets::run(&targets::Args::default())?;
    let manifest: Value = serde_json::from_str(&fs::read_to_string(targets::manifest_path())?)?;
    let out_dir = args
        .out_dir
        .clone()
        .unwrap_or_else(|| util::target_dir().join("suite"));
    fs::create_dir_all(&out_dir)?;
    let found = toolchains::installed::Discovery::run();
    let mut runs = planned_runs(&manifest, args);
    if let Some(version) = &args.python {
        let exe = python_for(version, &found)?.display().to_string();
        for run in runs.iter_mut().filter(|r| r.id.starts_with("python")) {
            if let Some(first) = run.command.first_mut() {
                *first = exe.clone();
            }
        }
    }
    if runs.is_empty() {
        bail!("no runs match --only/--scenarios");
    }
    let versions = version_runs(&manifest, args, &found)?;

    let bar = ProgressBar::new((runs.len() + versions.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut done: Vec<(String, String, PathBuf)> = Vec::new();
    for run in &runs {
        bar.set_message(format!("{} {}", run.id, run.scenario));
        let dir = out_dir.join(&run.scenario).join(&run.id);
        match record_twice(&alloctrace, run, &dir) {
            Ok(light_failure) => {
                if let Some(err) = light_failure {
                    bar.println(format!(
                        "suite: {} {} gc,rss recording failed: {err:#}",
                        run.id, run.scenario
                    ));
                    failures.push(format!("{} {} (gc,rss): {err:#}", run.id, run.scenario));
                }
                done.push((run.scenario.clone(), run.id.clone(), dir));
            }
            Err(err) => {
                bar.println(format!(
                    "suite: {} {} failed: {err:#}",
                    run.id, run.scenario
                ));
                failures.push(format!("{} {}: {err:#}", run.id, run.scenario));
            }
        }
        bar.inc(1);
    }
    let mut version_dirs = Vec::new();
    for (version, run) in &versions {
        bar.set_message(format!("CPython {version} {}", run.scenario));
        let dir = out_dir.join("python-versions").join(&run.id);
        match record_twice(&alloctrace, run, &dir) {
            Ok(light_failure) => {
                if let Some(err) = light_failure {
                    failures.push(format!("{} (gc,rss): {err:#}", run.id));
                }
                version_dirs.push((run.id.clone(), dir));
            }
            Err(err) => {
                bar.println(format!("suite: {} failed: {err:#}", run.id));
                failures.push(format!("{}: {err:#}", run.id));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    // One dashboard per scenario, then the findings and the landing page linking everything.
    let scenarios = findings::scenarios_in_order(&done);
    let dashboards = build_dashboards(&done, &scenarios, &out_dir, |dirs, dashboard| {
        let mut args: Vec<PathBuf> = dirs.to_vec();
        args.push(PathBuf::from("-o"));
        args.push(dashboard.to_owned());
        alloctrace_cmd(&alloctrace, &["compare", "-q"], &args)
    });
    let mut dashboards: Vec<(&str, Option<String>)> = dashboards
        .into_iter()
        .map(|(scenario, result)| match result {
            Ok(file) => (scenario, Some(file)),
            Err(err) => {
                failures.push(format!("dashboard {scenario}: {err:#}"));
                (scenario, None)
            }
        })
        .collect();
    // The CPython versions run one workload on each interpreter: their own group of the landing
    // page, with their own dashboard.
    let mut listed = done.clone();
    let mut scenarios = scenarios;
    if version_dirs.len() >= 2 {
        let file = "dashboard-python-versions.html";
        let mut args: Vec<PathBuf> = version_dirs.iter().map(|(_, d)| d.clone()).collect();
        args.push(PathBuf::from("-o"));
        args.push(out_dir.join(file));
        let built = match alloctrace_cmd(&alloctrace, &["compare", "-q"], &args) {
            Err(err) => {
                failures.push(format!("dashboard python-versions: {err:#}"));
                None
            }
            Ok(()) => Some(file.to_owned()),
        };
        dashboards.push((PYTHON_VERSIONS_GROUP, built));
        scenarios.push(PYTHON_VERSIONS_GROUP);
        listed.extend(
            version_dirs
                .iter()
                .map(|(id, dir)| (PYTHON_VERSIONS_GROUP.to_owned(), id.clone(), dir.clone())),
        );
    }
    let findings_path = out_dir.join("findings.md");
    fs::write(&findings_path, findings::markdown(&done))?;
    let rows = landing::rows(&listed, &scenarios, &out_dir);
    let index_path = out_dir.join("index.html");
    fs::write(&index_path, landing::html(&rows, &dashboards, &failures))?;
    println!(
        "suite: {} runs traced in {:.0?}; open {} (numbers: {})",
        done.len(),
        started.elapsed(),
        index_path.display(),
        findings_path.display()
    );
    if !failures.is_empty() {
        bail!(
            "{} of {} runs failed:\n  {}",
            failures.len(),
            runs.len() + versions.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check `--python`: a version found resolves to its interpreter, a missing one says where
    /// it looked and how to get one, and a malformed one says what is expected.
    #[test]
    fn python_choice() {
        let found = toolchains::installed::Discovery::run();
        if let Some(first) = found.full_depth().first() {
            assert_eq!(python_for(&first.minor_text(), &found).unwrap(), first.exe);
        }
        let none = toolchains::installed::Discovery::from_list("");
        let err = python_for("3.13", &none).unwrap_err().to_string();
        assert!(
            err.contains("no CPython 3.13 with a symbol table") && err.contains("pyenv install"),
            "{err}"
        );
        let err = python_for("three", &found).unwrap_err().to_string();
        assert!(err.contains("expected a version such as 3.13"), "{err}");
    }

    /// Check that each scenario's dashboard is built once, from all of its runs, when runs come
    /// language by language (the scenarios interleave), and that a failed dashboard is reported
    /// without stopping the others.
    #[test]
    fn one_dashboard_per_scenario() {
        let mut done = Vec::new();
        for id in ["rust", "cpp", "go"] {
            for scenario in ["binary-trees", "churn", "fragmentation"] {
                done.push((
                    scenario.to_owned(),
                    id.to_owned(),
                    PathBuf::from(format!("/s/{scenario}/{id}")),
                ));
            }
        }
        let scenarios = findings::scenarios_in_order(&done);
        let mut calls: Vec<(Vec<PathBuf>, PathBuf)> = Vec::new();
        let built = build_dashboards(&done, &scenarios, Path::new("/s"), |dirs, out| {
            calls.push((dirs.to_vec(), out.to_owned()));
            if out.ends_with("dashboard-churn.html") {
                bail!("boom");
            }
            Ok(())
        });
        assert_eq!(calls.len(), 3);
        for (scenario, (dirs, out)) in ["binary-trees", "churn", "fragmentation"]
            .iter()
            .zip(&calls)
        {
            assert_eq!(out, &PathBuf::from(format!("/s/dashboard-{scenario}.html")));
            assert_eq!(dirs.len(), 3);
            assert!(dirs.iter().all(|d| d.starts_with(format!("/s/{scenario}"))));
        }
        let names: Vec<_> = built
            .iter()
            .map(|(s, r)| (*s, r.as_ref().ok().cloned()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "binary-trees",
                    Some("dashboard-binary-trees.html".to_owned())
                ),
                ("churn", None),
                (
                    "fragmentation",
                    Some("dashboard-fragmentation.html".to_owned())
                ),
            ]
        );
    }
}
