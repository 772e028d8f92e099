//! `cargo xtask test`: the README's test command and what `.ci/run` runs.

use std::process::Command;

use anyhow::bail;

use crate::{setup, util};

#[derive(clap::Args, Default)]
pub struct Args {
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
            .current_dir(ws),
    )
}
