//! `cargo xtask suite`: the main job. Sets the machine up, builds alloctrace and the workload
//! targets, traces every target × scenario × variant of the manifest, reports each trace,
//! builds one comparison dashboard per scenario and an index page, and prints where to open it.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::{findings, setup, targets, toolchains, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// A one-minute version: one variant per language, three scenarios, small sizes.
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
    #[arg(skip)]
    pub alloctrace: Option<PathBuf>,
}

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

const QUICK_RUNNABLES: &[&str] = &[
    "rust-system",
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

/// Records one run; returns the program's own JSON counters.
fn record(alloctrace: &Path, run: &Run, dir: &Path) -> anyhow::Result<Value> {
    let out = Command::new(alloctrace)
        .args(["record", "-q", "--force", "-o"])
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
        let result = record(&alloctrace, run, &dir).and_then(|_| {
            alloctrace_cmd(&alloctrace, &["report", "-q"], std::slice::from_ref(&dir))
        });
        match result {
            Ok(()) => done.push((run.scenario.clone(), run.id.clone(), dir)),
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
        let result = record(&alloctrace, run, &dir).and_then(|_| {
            alloctrace_cmd(&alloctrace, &["report", "-q"], std::slice::from_ref(&dir))
        });
        match result {
            Ok(()) => version_dirs.push((run.id.clone(), dir)),
            Err(err) => {
                bar.println(format!("suite: {} failed: {err:#}", run.id));
                failures.push(format!("{}: {err:#}", run.id));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    // One dashboard per scenario, and an index linking everything.
    let mut index = String::from(
        "<!doctype html><meta charset=utf-8><title>alloctrace suite</title><h1>alloctrace suite</h1>\n",
    );
    let mut scenarios: Vec<&str> = done.iter().map(|(s, _, _)| s.as_str()).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let dirs: Vec<PathBuf> = done
            .iter()
            .filter(|(s, _, _)| s == scenario)
            .map(|(_, _, d)| d.clone())
            .collect();
        let dashboard = out_dir.join(format!("dashboard-{scenario}.html"));
        let mut args: Vec<PathBuf> = dirs.clone();
        args.push(PathBuf::from("-o"));
        args.push(dashboard.clone());
        if let Err(err) = alloctrace_cmd(&alloctrace, &["compare", "-q"], &args) {
            failures.push(format!("dashboard {scenario}: {err:#}"));
            continue;
        }
        let _ = writeln!(
            index,
            "<h2>{scenario}: <a href=\"dashboard-{scenario}.html\">dashboard</a></h2><ul>"
        );
        for (_, id, dir) in done.iter().filter(|(s, _, _)| s == scenario) {
            let rel = dir
                .strip_prefix(&out_dir)
                .unwrap_or(dir)
                .display()
                .to_string();
            let _ = writeln!(index, "<li><a href=\"{rel}/report.html\">{id}</a></li>");
        }
        index.push_str("</ul>\n");
    }
    if version_dirs.len() >= 2 {
        let dashboard = out_dir.join("dashboard-python-versions.html");
        let mut args: Vec<PathBuf> = version_dirs.iter().map(|(_, d)| d.clone()).collect();
        args.push(PathBuf::from("-o"));
        args.push(dashboard);
        match alloctrace_cmd(&alloctrace, &["compare", "-q"], &args) {
            Err(err) => failures.push(format!("dashboard python-versions: {err:#}")),
            Ok(()) => {
                let _ = writeln!(
                    index,
                    "<h2>CPython versions ({VERSIONS_RUNNABLE}, {VERSIONS_SCENARIO}): \
                     <a href=\"dashboard-python-versions.html\">dashboard</a></h2><ul>"
                );
                for (id, dir) in &version_dirs {
                    let rel = dir
                        .strip_prefix(&out_dir)
                        .unwrap_or(dir)
                        .display()
                        .to_string();
                    let _ = writeln!(index, "<li><a href=\"{rel}/report.html\">{id}</a></li>");
                }
                index.push_str("</ul>\n");
            }
        }
    }
    if !failures.is_empty() {
        index.push_str("<h2>Failed runs</h2><ul>");
        for f in &failures {
            let _ = write!(index, "<li>{}</li>", f.replace('<', "&lt;"));
        }
        index.push_str("</ul>\n");
    }
    let findings_path = out_dir.join("findings.md");
    fs::write(&findings_path, findings::markdown(&done))?;
    let _ = writeln!(
        index,
        "<p><a href=\"findings.md\">findings.md</a>: every run's headline numbers in one table per scenario.</p>"
    );
    let index_path = out_dir.join("index.html");
    fs::write(&index_path, index)?;
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
}
