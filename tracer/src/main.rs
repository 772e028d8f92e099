//! The `alloctrace` binary: parse the command line, run the subcommand, report errors on one
//! line. The work is done by the `alloctrace` library and the `analysis` crate.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, _) => log::LevelFilter::Debug,
    };
    // aya's own debug output (relocations, feature probes) only at -vvv.
    let aya_level = if cli.verbose >= 3 {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module("aya", aya_level)
        .filter_module("aya_obj", aya_level)
        .format_target(false)
        .format_timestamp(None)
        .init();
    let result = match cli.command {
        cli::Command::Record(args) => cmd::record::run(args, cli.quiet),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("alloctrace: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
