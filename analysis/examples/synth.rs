//! Writes a synthetic trace: `cargo run --release -p alloctrace-analysis --example synth -- DIR [EVENTS] [native|go|python]`.

use std::{env, path::PathBuf, process::ExitCode, time::Instant};

use analysis::synth::{Flavor, Synth};

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: synth DIR [EVENTS] [native|go|python]");
        return ExitCode::FAILURE;
    };
    let events = args
        .next()
        .and_then(|e| e.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let flavor = match args.next().as_deref() {
        Some("go") => Flavor::Go,
        Some("python") => Flavor::Python,
        _ => Flavor::Native,
    };
    let started = Instant::now();
    match (Synth {
        events,
        flavor,
        ..Synth::default()
    })
    .write(&dir)
    {
        Ok(run) => {
            eprintln!(
                "wrote {} rows in {} segments to {} in {:.1?}",
                run.events_written,
                run.segments.len(),
                dir.display(),
                started.elapsed()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("synth: {err}");
            ExitCode::FAILURE
        }
    }
}
