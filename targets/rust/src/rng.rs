//! The PRNG and the size distributions every language implements identically.

/// splitmix64 (Steele, Lea, Flood 2014): the same seed gives the same sequence in all four
/// languages' targets, so they allocate the same sizes in the same order.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    /// Outputs drawn so far (reported as `rng_draws`: equal in every language).
    pub draws: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            draws: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.draws += 1;
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (plain modulo: the bias is irrelevant and trivially portable).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One seed per worker: the first `threads` outputs of `Rng::new(seed)`.
pub fn worker_seeds(seed: u64, threads: usize) -> Vec<u64> {
    let mut root = Rng::new(seed);
    (0..threads).map(|_| root.next_u64()).collect()
}

/// Worker `index`'s share of `total` items split over `parts` workers.
pub fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    let index = index as u64;
    total / parts + u64::from(index < total % parts)
}

/// The fill byte of the `index`-th object a worker allocates: never 0 (so no allocator can
/// satisfy it with pre-zeroed memory), the same in every language.
pub fn fill_byte(index: u64) -> u8 {
    (1 + index % 255) as u8
}

/// Mixed object sizes for `churn`: 60 % 16–127 B, 30 % 128–1023 B, 9 % 1–8 KiB,
/// 0.9 % 8–64 KiB, 0.1 % 64–256 KiB. Always two draws.
pub fn mixed_size(rng: &mut Rng) -> u64 {
    let class = rng.below(1000);
    if class < 600 {
        16 + rng.below(112)
    } else if class < 900 {
        128 + rng.below(896)
    } else if class < 990 {
        1024 + rng.below(7168)
    } else if class < 999 {
        8192 + rng.below(57344)
    } else {
        65536 + rng.below(196_608)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut rng = Rng::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn shares_add_up() {
        for total in [0, 1, 7, 100] {
            for parts in 1..5 {
                assert_eq!(
                    (0..parts).map(|i| share(total, parts, i)).sum::<u64>(),
                    total
                );
            }
        }
    }
}
