//! `alloctrace symbolize`: a thin wrapper over `analysis::symbolize`.

use analysis::symbolize::{self, Options};

use crate::cli::SymbolizeArgs;

pub fn run(args: SymbolizeArgs, quiet: bool) -> anyhow::Result<i32> {
    let options = Options {
        debug_dirs: args.debug_dirs,
    };
    let summary = symbolize::symbolize_trace_with(&args.trace, &options)?;
    if !quiet {
        super::out(&format!("{summary}\n"))?;
    }
    Ok(0)
}
