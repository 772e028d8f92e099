//! One handler per subcommand.

pub mod export;
pub mod record;
pub mod report;
pub mod symbolize;
