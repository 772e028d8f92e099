//! The notebooks (`notebooks/`): their pinned Python packages, and running them top to bottom
//! on small traces recorded for the purpose, exported into a dataset (docs/datasets.md).
//!
//! `setup` installs the packages with [`ensure_venv`]; `test` runs [`ci`], which records three
//! short workloads (C++, Rust with two threads, Python), reports and exports them, and runs
//! `notebooks/run_all.py`: every notebook asserts that what it recomputes from the rows equals
//! the analysis crate's `summary.json`, and `test_dataset.py` checks the dataset queries and
//! row-group pruning. About 30 s once the venv exists.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{targets, toolchains, util};

/// `notebooks/requirements.txt`, read when xtask is built (cargo rebuilds xtask when it changes).
const REQUIREMENTS_TXT: &str = include_str!("../../notebooks/requirements.txt");

/// The pinned requirement lines of `notebooks/requirements.txt` (`name==version`), comments and
/// blank lines left out.
pub fn requirements() -> Vec<String> {
    REQUIREMENTS_TXT
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The project venv (`toolchains::ensure_python_venv`) with the notebooks' packages; returns its
/// `python`. Idempotent: pip runs only when the pinned list or the interpreter changed.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    let requirements = requirements();
    let refs: Vec<&str> = requirements.iter().map(String::as_str).collect();
    toolchains::ensure_python_venv(&refs)
}

/// Runs `notebooks/run_all.py` with `python` (the venv's) on `traces` (reported: they have a
/// summary.json) and `dataset` (where the traces were exported); executed copies of the
/// notebooks go to `target/notebooks/executed`. Fails if a notebook or a dataset check fails.
pub fn run(python: &Path, traces: &[PathBuf], dataset: &Path) -> anyhow::Result<()> {
    if traces.is_empty() {
        bail!("the notebooks need at least one trace");
    }
    let out = util::target_dir().join("notebooks/executed");
    let mut cmd = Command::new(python);
    cmd.arg(util::workspace().join("notebooks/run_all.py"));
    for trace in traces {
        cmd.arg("--trace").arg(trace);
    }
    cmd.arg("--dataset")
        .arg(dataset)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null());
    util::run(&mut cmd)
        .context("the notebooks failed (executed copies in target/notebooks/executed)")
}

/// `alloctrace export --dataset DATASET TRACE` for each trace.
pub fn export(alloctrace: &Path, traces: &[PathBuf], dataset: &Path) -> anyhow::Result<()> {
    for trace in traces {
        util::run(
            Command::new(alloctrace)
                .args(["export", "--dataset"])
                .arg(dataset)
                .arg(trace)
                .stdin(Stdio::null()),
        )?;
    }
    Ok(())
}

/// The workloads recorded for the notebooks: small (a few seconds in all), in three languages,
/// one of them with two threads, so the comparison notebook has something to compare and the
/// dataset has several processes and row groups to prune.
fn ci_workloads() -> Vec<(&'static str, Vec<String>)> {
    let bin = targets::out_dir().join("bin");
    let command = |program: Vec<PathBuf>, args: &str| -> Vec<String> {
        program
            .iter()
            .map(|p| p.display().to_string())
            .chain(args.split_whitespace().map(str::to_owned))
            .collect()
    };
    vec![
        (
            "cpp-churn",
            command(
                vec![bin.join("alloc-cpp")],
                "churn --size 50000 --seed 1 --threads 1 --variant new",
            ),
        ),
        (
            "rust-producer-consumer",
            command(
                vec![bin.join("alloc-rust-system")],
                "producer-consumer --size 30000 --seed 1 --threads 2",
            ),
        ),
        (
            "python-churn",
            command(
                vec![toolchains::python(), bin.join("alloc-python.py")],
                "churn --size 5000 --seed 1 --threads 1",
            ),
        ),
    ]
}

/// Records the CI workloads into `out/<name>` (replacing earlier recordings) and reports each
/// (`summary.json`). The workload's own JSON line (work units, language) goes into run.json's
/// `workload`, as `cargo xtask suite` does. Needs root and the built targets.
pub fn record_traces(alloctrace: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut traces = Vec::new();
    for (name, command) in ci_workloads() {
        let dir = out.join(name);
        let output = Command::new(alloctrace)
            .args(["record", "-q", "--force", "-o"])
            .arg(&dir)
            .arg("--")
            .args(&command)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", alloctrace.display()))?;
        if !output.status.success() {
            bail!(
                "recording {name} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) {
            let mut workload: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{name} printed a malformed counters line"))?;
            workload["label"] = serde_json::Value::String(name.to_owned());
            let run_json = dir.join("run.json");
            let mut run: serde_json::Value = serde_json::from_str(&fs::read_to_string(&run_json)?)
                .with_context(|| format!("{} is not JSON", run_json.display()))?;
            run["workload"] = workload;
            fs::write(&run_json, serde_json::to_string_pretty(&run)? + "\n")?;
        }
        util::run(
            Command::new(alloctrace)
                .args(["report", "-q"])
                .arg(&dir)
                .stdin(Stdio::null()),
        )?;
        traces.push(dir);
    }
    Ok(traces)
}

/// Everything the notebooks need in CI, under `target/notebooks/`: the venv, three fresh
/// traces (`traces/`), a fresh dataset of them (`dataset/`), then every notebook and the
/// dataset checks, recorded with the `alloctrace` binary given. Needs root and the targets
/// (`targets::run`).
pub fn ci(alloctrace: &Path) -> anyhow::Result<()> {
    let python = ensure_venv()?;
    let alloctrace = alloctrace.to_path_buf();
    let work = util::target_dir().join("notebooks");
    let dataset = work.join("dataset");
    if dataset.exists() {
        // A dataset keeps runs across exports: start empty so it holds exactly these traces.
        fs::remove_dir_all(&dataset)
            .with_context(|| format!("cannot remove {}", dataset.display()))?;
    }
    let traces = record_traces(&alloctrace, &work.join("traces"))?;
    export(&alloctrace, &traces, &dataset)?;
    run(&python, &traces, &dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that every requirement is pinned to an exact version and that the packages the
    /// notebooks import are there.
    #[test]
    fn requirements_are_pinned() {
        let requirements = requirements();
        assert!(
            requirements.iter().all(|r| r
                .split_once("==")
                .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty())),
            "{requirements:?}"
        );
        for package in [
            "duckdb",
            "polars",
            "pyarrow",
            "pandas",
            "plotly",
            "nbclient",
            "ipykernel",
        ] {
            assert!(
                requirements
                    .iter()
                    .any(|r| r.starts_with(&format!("{package}=="))),
                "{package} missing"
            );
        }
    }
}
