//! `cargo xtask test`: the README's test command and what `.ci/run` runs.
//!
//! Everything, in one go: set the machine up, build the release tracer and the workload
//! targets, run the quick suite (its dashboards are checked in a real browser by the analysis
//! crate's browser test) and the notebooks on traces recorded here, then every cargo test of
//! the workspace: unit tests and the privileged eBPF tests, one at a time. Before those, a
//! check that the recorder library builds without the analysis crate (the layering).

use std::{env, ffi::OsString, process::Command};

use anyhow::bail;

use crate::{notebooks, setup, suite, targets, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Only run `cargo test` (skip the suite and notebook runs).
    #[arg(long)]
    pub cargo_only: bool,
    /// Extra arguments passed to the test binaries (e.g. a test name filter).
    #[arg(last = true)]
    pub filter: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    setup::run(&setup::Args::default())?;
    if !util::is_root() {
        bail!(
            "the eBPF tests load programs and trace processes: run as root (sudo -E cargo xtask test)"
        );
    }
    let ws = util::workspace();
    let mut check_html: Vec<OsString> = Vec::new();
    if !args.cargo_only {
        // The suite and notebooks run the same (dev-profile) binary the tests build, so CI
        // compiles the dependencies once, not for a release build too.
        let bin = util::build_debug()?;

        targets::run(&targets::Args::default())?;
        let suite_dir = util::target_dir().join("suite-quick");
        suite::run(&suite::Args {
            quick: true,
            out_dir: Some(suite_dir.clone()),
            alloctrace: Some(bin.clone()),
            ..suite::Args::default()
        })?;
        // mimalloc's arena reservation and Go's heap arenas made mapped footprint/live
        // meaningless: their runs must show it computed from resident memory.
        suite::check_resident_footprint(&suite_dir)?;
        for entry in std::fs::read_dir(&suite_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "index.html" || (name.starts_with("dashboard-") && name.ends_with(".html")) {
                check_html.push(entry.path().into_os_string());
            }
        }
        notebooks::ci(&bin)?;
    }
    // The layering: the recorder library builds without the analysis crate (only the binary's
    // report/export commands use it). A `use analysis::…` in tracer/src outside cmd/ fails here.
    util::run(
        Command::new(env!("CARGO"))
            .args([
                "check",
                "--quiet",
                "--package",
                "tracer",
                "--lib",
                "--no-default-features",
            ])
            .env("ALLOCTRACE_BUILD_EBPF", "1")
            .current_dir(&ws),
    )?;
    // One cargo invocation: unit tests of every crate, then the privileged integration tests.
    // `--test-threads=1` because the eBPF tests each trace a process and measure it.
    util::run(
        Command::new(env!("CARGO"))
            .args([
                "test",
                "--workspace",
                "--exclude",
                "tracer-ebpf",
                "--no-fail-fast",
                "--",
            ])
            .arg("--test-threads=1")
            .args(&args.filter)
            .env("ALLOCTRACE_BUILD_EBPF", "1")
            // The browser test also loads the quick suite's landing page and dashboards.
            .env("ALLOCTRACE_CHECK_HTML", env::join_paths(&check_html)?)
            .current_dir(ws),
    )
}
