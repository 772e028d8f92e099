//! `alloctrace export`: a thin wrapper over `analysis::export`.

use analysis::export::{self, Format, Options, profile::Measure};
use anyhow::Context as _;

use crate::cli::{ExportArgs, ExportFormat};

pub fn run(args: ExportArgs, quiet: bool) -> anyhow::Result<i32> {
    if let Some(root) = &args.dataset {
        let options = analysis::dataset::ExportOptions {
            host: args.host.clone(),
            run: args.run.clone(),
            ..Default::default()
        };
        let summary = analysis::dataset::export(&args.trace, root, &options)?;
        if !quiet {
            super::out(&format!(
                "dataset: {} rows in {} files ({} row groups) under {}\n",
                summary.rows,
                summary.files.len(),
                summary.row_groups,
                summary.run_dir.display()
            ))?;
        }
        return Ok(0);
    }
    let format = match args.format {
        Some(ExportFormat::Folded) | None => Format::Folded,
        Some(ExportFormat::Pprof) => Format::Pprof,
        Some(ExportFormat::Speedscope) => Format::Speedscope,
    };
    // clap restricts the value to the names Measure::parse knows.
    let measure =
        Measure::parse(&args.value).with_context(|| format!("unknown measure `{}`", args.value))?;
    let options = Options {
        format,
        measure,
        lines: args.lines,
        ..Options::default()
    };
    let output = args
        .output
        .unwrap_or_else(|| args.trace.join(format.default_file_name()));
    let summary = export::export_to_file(&args.trace, &options, &output)?;
    // The status line goes to stderr: stdout may be the profile itself (`-o -`) or a pipe.
    let to_stdout = output.as_os_str() == "-";
    if !quiet && !to_stdout {
        eprintln!(
            "export: {} ({} stacks{})",
            output.display(),
            summary.samples,
            if summary.symbolized_now {
                ", symbolized in memory: run `alloctrace symbolize` to keep frames.parquet"
            } else {
                ""
            }
        );
    }
    Ok(0)
}
