// Three allocating call paths through the Rust global allocator (the system allocator, i.e.
// glibc), each in its own functions, for the symbolization tests: main → run_alpha →
// make_alpha → Vec::with_capacity, and the same for beta (a boxed slice) and gamma (a zeroed
// Vec, through calloc). Each path moves a different number of bytes (alpha > beta > gamma), and
// each allocates differently, so the compiler cannot merge their functions into one. Every allocating line carries a
// SITE_ marker the test looks up to know its line number.
use std::hint::black_box;

mod paths {
    use std::hint::black_box;

    #[inline(never)]
    pub fn make_alpha(n: usize) -> Vec<u8> {
        Vec::with_capacity(n) // SITE_ALPHA
    }

    #[inline(never)]
    pub fn make_beta(n: usize) -> Box<[u64]> {
        vec![7u64; n].into_boxed_slice() // SITE_BETA
    }

    #[inline(never)]
    pub fn make_gamma(n: usize) -> Vec<u16> {
        vec![0u16; n] // SITE_GAMMA
    }

    #[inline(never)]
    pub fn run_alpha(rounds: usize, n: usize) {
        for _ in 0..rounds {
            black_box(make_alpha(black_box(n)));
        }
    }

    #[inline(never)]
    pub fn run_beta(rounds: usize, n: usize, kept: &mut Vec<Box<[u64]>>) {
        for _ in 0..rounds {
            kept.push(black_box(make_beta(black_box(n))));
        }
    }

    #[inline(never)]
    pub fn run_gamma(rounds: usize, n: usize, kept: &mut Vec<Vec<u16>>) {
        for i in 0..rounds {
            let s = black_box(make_gamma(black_box(n)));
            if i % 2 == 0 {
                kept.push(s);
            }
        }
    }
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let unit = 1000 + std::env::args().count();
    let mut boxes = Vec::with_capacity(rounds);
    let mut strings = Vec::with_capacity(rounds);
    paths::run_alpha(rounds * 4, unit * 4);
    paths::run_beta(rounds, unit / 4, &mut boxes);
    paths::run_gamma(rounds, unit / 4, &mut strings);
    black_box((&boxes, &strings));
    println!("{{\"rounds\":{rounds},\"unit\":{unit}}}");
}
