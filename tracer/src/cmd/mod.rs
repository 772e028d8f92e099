//! One handler per subcommand.

use std::io::{self, Write as _};

pub mod export;
pub mod record;
pub mod report;
pub mod symbolize;

/// Writes `text` to stdout. A closed pipe (`alloctrace report t | head -1`) comes back as an
/// `io::ErrorKind::BrokenPipe` error, which `main` treats as a clean exit, instead of the
/// panic `print!` would raise.
pub fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}
