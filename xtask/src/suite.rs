//! `cargo xtask suite`: the main job. Sets the machine up, builds alloctrace and the workload
//! targets, traces them, and prints where the results are.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{setup, targets, util};

#[derive(clap::Args, Default)]
pub struct Args {
    /// A one-minute version: small sizes, fewer variants.
    #[arg(long)]
    pub quick: bool,
}

/// Where the suite's traces go.
pub fn suite_dir() -> PathBuf {
    util::target_dir().join("suite")
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    setup::run(&setup::Args::default())?;
    if !util::is_root() {
        bail!("tracing loads eBPF programs: run the suite as root");
    }
    util::build_release()?;
    targets::run(&targets::Args::default())?;
    let bin = targets::out_dir().join("bin");
    let alloctrace = util::alloctrace_bin();
    let size = if args.quick { "12" } else { "16" };
    let runs: [(&str, PathBuf, Vec<String>); 2] = [
        (
            "cpp-new-binary-trees",
            bin.join("alloc-cpp"),
            vec!["binary-trees".into(), "--size".into(), size.into()],
        ),
        (
            "rust-system-binary-trees",
            bin.join("alloc-rust-system"),
            vec!["binary-trees".into(), "--size".into(), size.into()],
        ),
    ];
    fs::create_dir_all(suite_dir())?;
    for (name, program, program_args) in runs {
        let out = suite_dir().join(name);
        eprintln!("suite: tracing {name}");
        util::run(
            Command::new(&alloctrace)
                .args(["record", "--force", "-o"])
                .arg(&out)
                .arg("--")
                .arg(&program)
                .args(&program_args),
        )
        .with_context(|| format!("tracing {name}"))?;
    }
    println!("suite: traces written under {}", suite_dir().display());
    Ok(())
}
