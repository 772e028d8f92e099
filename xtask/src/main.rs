//! Project automation. `cargo xtask --help` lists the tasks; README.md says which to run.

mod setup;
mod test;
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup(args) => setup::run(&args),
        Task::Build => {
            setup::run(&setup::Args::default())?;
            util::build_release()
        }
        Task::Test(args) => test::run(&args),
    }
}
