// Allocates through Rust's global allocator (the system allocator, i.e. glibc) with distinctive
// layouts, and prints its own counters as one JSON line.
use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc};
use std::hint::black_box;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let (mut allocs, mut zeroed, mut reallocs, mut aligned, mut frees) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut bytes = 0u64;
    for i in 0..rounds {
        let size = 3001 + 2 * (i % 100);
        // SAFETY: layouts are non-zero-sized; every pointer is checked and freed with its layout.
        unsafe {
            let layout = Layout::from_size_align(size, 8).unwrap();
            let p = black_box(alloc(layout));
            assert!(!p.is_null());
            allocs += 1;
            bytes += size as u64;
            let q = black_box(realloc(p, layout, size + 4000));
            assert!(!q.is_null());
            reallocs += 1;
            dealloc(q, Layout::from_size_align(size + 4000, 8).unwrap());
            frees += 1;
            let z = black_box(alloc_zeroed(layout));
            zeroed += 1;
            dealloc(z, layout);
            frees += 1;
            let big_align = Layout::from_size_align(size, 256).unwrap();
            let a = black_box(alloc(big_align));
            aligned += 1;
            dealloc(a, big_align);
            frees += 1;
        }
    }
    println!(
        "{{\"alloc\":{allocs},\"alloc_bytes\":{bytes},\"alloc_zeroed\":{zeroed},\"realloc\":{reallocs},\"aligned\":{aligned},\"dealloc\":{frees}}}"
    );
}
