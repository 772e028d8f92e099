mod bad_input;
mod common;
mod native;
mod stop;
mod symbols;
