//! The scenarios on Rust's default global allocator (`std::alloc::System`, i.e. glibc malloc).

fn main() {
    std::process::exit(alloc_rust::main("system"));
}
