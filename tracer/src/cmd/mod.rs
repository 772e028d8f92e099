//! One handler per subcommand.

pub mod record;
pub mod report;
