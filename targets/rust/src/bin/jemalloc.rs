//! The scenarios with jemalloc (tikv-jemallocator) as the global allocator.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    std::process::exit(alloc_rust::main("jemalloc"));
}
