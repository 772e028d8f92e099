//! One handler per subcommand.

pub mod record;
