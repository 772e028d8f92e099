mod attach;
mod bad_input;
mod common;
mod native;
mod python;
mod stop;
