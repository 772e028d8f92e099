//! `growth`: vectors grown one `push` at a time, eight at once (interleaved, so a vector's
//! storage is rarely the heap's last block). A growth step is a change of `capacity()`: one
//! (re)allocation of the element storage.

use bumpalo::{Bump, collections::Vec as BumpVec};

use crate::{Config, Report, Tally, heap::ChunkStats, rng::Rng};

pub const GROUP: u64 = 8;

/// What a growth step needs from a vector of `u64`.
trait Growable {
    fn push_elem(&mut self, value: u64);
    fn cap(&self) -> usize;
    fn elems(&self) -> &[u64];
}

/// Both growable vectors forward to their own inherent methods.
macro_rules! forward_growable {
    ($($t:ty),*) => {$(
        impl Growable for $t {
            fn push_elem(&mut self, value: u64) {
                self.push(value);
            }
            fn cap(&self) -> usize {
                self.capacity()
            }
            fn elems(&self) -> &[u64] {
                self
            }
        }
    )*};
}

forward_growable!(Vec<u64>, BumpVec<'_, u64>);

/// Target length of a vector: 90 % 1–1000 elements, 10 % 1–100 000. Always two draws.
pub fn target_len(rng: &mut Rng) -> u64 {
    if rng.below(100) < 90 {
        1 + rng.below(1000)
    } else {
        1 + rng.below(100_000)
    }
}

fn grow_group<V: Growable>(vecs: &mut [V], lens: &[u64], tally: &mut Tally) {
    let longest = lens.iter().copied().max().unwrap_or(0);
    for j in 0..longest {
        for (v, &len) in vecs.iter_mut().zip(lens) {
            if j < len {
                let before = v.cap();
                v.push_elem(j & 0xff);
                if v.cap() != before {
                    tally.objects += 1;
                    tally.bytes += (v.cap() * size_of::<u64>()) as u64;
                }
            }
        }
    }
    for v in vecs.iter() {
        tally.checksum += v.elems().iter().sum::<u64>();
        tally.work += v.elems().len() as u64;
    }
}

fn worker(count: u64, seed: u64, arena: bool) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut vecs: Vec<Vec<u64>> = (0..GROUP).map(|_| Vec::new()).collect();
    let mut bump = Bump::new();
    let mut stats = ChunkStats::default();
    let mut done = 0;
    while done < count {
        let k = GROUP.min(count - done) as usize;
        let mut lens = [0u64; GROUP as usize];
        for len in &mut lens[..k] {
            *len = target_len(&mut rng);
        }
        let lens = &lens[..k];
        if arena {
            {
                let mut bvecs: [BumpVec<'_, u64>; GROUP as usize] =
                    std::array::from_fn(|_| BumpVec::new_in(&bump));
                grow_group(&mut bvecs[..k], lens, &mut tally);
            }
            stats.before_reset(&mut bump);
            bump.reset();
            stats.after_reset(&mut bump);
        } else {
            grow_group(&mut vecs[..k], lens, &mut tally);
            for v in &mut vecs[..k] {
                *v = Vec::new(); // frees the storage; the next group starts from nothing
            }
        }
        done += k as u64;
    }
    tally.draws = rng.draws;
    tally.payload = tally.work * size_of::<u64>() as u64;
    if arena {
        tally.upstream = Some((stats.chunks, stats.bytes));
    }
    tally
}

pub fn run(config: &Config) -> Report {
    let tally = Tally::sum(super::parallel(config, |count, seed| {
        worker(count, seed, config.arena)
    }));
    let mut report = Report {
        work_units: tally.work,
        objects: tally.objects,
        bytes_requested: tally.bytes,
        extra: Vec::new(),
    }
    .extra("vectors", config.size)
    .extra("elements", tally.work)
    .extra("payload_bytes", tally.payload)
    .extra("checksum", tally.checksum)
    .extra("rng_draws", tally.draws);
    if let Some((allocs, bytes)) = tally.upstream {
        report = report
            .extra("heap_allocs", allocs)
            .extra("heap_bytes", bytes);
    }
    report
}
