mod attach;
mod bad_input;
mod common;
mod golang;
mod native;
mod python;
mod stop;
mod symbols;
