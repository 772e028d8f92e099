//! Project automation. `cargo xtask --help` lists the tasks; README.md says which to run.

mod bench;
mod figures;
mod findings;
mod landing;
mod notebooks;
mod setup;
mod suite;
mod targets;
mod test;
mod toolchains;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "alloctrace project tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (idempotent): Debian packages, nightly rust-src,
    /// bpf-linker built against the nightly toolchain's LLVM, Go, Python packages.
    Setup(setup::Args),
    /// Build alloctrace with its eBPF programs (release).
    Build,
    /// Run every test: unit tests, then the privileged eBPF tests (as root, one at a time).
    Test(test::Args),
    /// Build the workload programs in targets/ (Rust, C++, Go, Python) with frame pointers.
    Targets(targets::Args),
    /// Measure what tracing costs, side by side with untraced runs and other tracers.
    Bench(bench::Args),
    /// The main job: set up, build, trace the workload suite and report where the results are.
    Suite(suite::Args),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.task {
        Task::Setup(args) => setup::run(&args),
        Task::Build => {
            setup::run(&setup::Args::default())?;
            util::build_release()
        }
        Task::Test(args) => test::run(&args),
        Task::Targets(args) => targets::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Suite(args) => suite::run(&args),
    }
}
