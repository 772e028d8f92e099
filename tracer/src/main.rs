//! The `alloctrace` binary: parse the command line, run the subcommand, report errors on one
//! line. The work is done by the `alloctrace` library and the `analysis` crate.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Panics of the Parquet/Arrow/ELF/DWARF parsers on damaged input are caught where they are
    // called (`trace_format::guard`) and become one-line errors; keep the default hook from
    // printing those. Any other panic is a bug in alloctrace: say so on one line
    // (ALLOCTRACE_BACKTRACE=1 for the full report); the process then exits with status 101.
    std::panic::set_hook(Box::new(|info| {
        if std::env::var_os("ALLOCTRACE_BACKTRACE").is_some() {
            eprintln!("{info}\n{}", std::backtrace::Backtrace::force_capture());
        } else if !trace_format::guard::is_active() {
            let message = info.to_string().replace('\n', " ");
            eprintln!("alloctrace: internal error (please report): {message}");
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
        // The reader of our stdout went away (`| head`): nothing left to say, not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alloctrace: error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
