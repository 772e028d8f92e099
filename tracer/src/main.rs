//! The `alloctrace` binary: parse the command line, run the subcommand, report errors on one
//! line. The work is done by the `alloctrace` library and the `analysis` crate.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The analysis crate turns panics of the Parquet/Arrow decoders on malformed files into
    // one-line errors; keep the default hook from printing them first. Any other panic is a bug
    // in alloctrace: say so on one line (ALLOCTRACE_BACKTRACE=1 for the full report).
    std::panic::set_hook(Box::new(|info| {
        let file = info.location().map(|l| l.file()).unwrap_or_default();
        // Symbolization guards its ELF/DWARF parsers (blazesym, gimli) the same way.
        let in_decoder = ["/parquet-", "/arrow-", "/blazesym-", "/gimli-"]
            .iter()
            .any(|crate_dir| file.contains(crate_dir));
        if std::env::var_os("ALLOCTRACE_BACKTRACE").is_some() {
            eprintln!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        } else if !in_decoder {
            eprintln!("alloctrace: internal error (please report): {info}");
        }
    }));
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
        cli::Command::Report(args) => cmd::report::run(args, cli.quiet),
        cli::Command::Compare(args) => cmd::report::compare(args, cli.quiet),
        cli::Command::Symbolize(args) => cmd::symbolize::run(args, cli.quiet),
        cli::Command::Export(args) => cmd::export::run(args, cli.quiet),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("alloctrace: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
