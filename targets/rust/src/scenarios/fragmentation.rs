//! `fragmentation`: rounds of `ROUND` small objects (16–128 B); every other one is freed, then
//! half as many larger objects (256–1024 B) are allocated, which do not fit the holes. The round's
//! survivors are read and freed at its end (the arena resets there).

use crate::{
    Config, Report, Tally,
    heap::BufHeap,
    rng::{self, Rng},
};

pub const ROUND: u64 = 16384;

fn worker<H: BufHeap>(heap: &mut H, count: u64, seed: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut done = 0;
    while done < count {
        let round = ROUND.min(count - done);
        {
            let heap: &H = heap;
            let mut small: Vec<Option<H::Buf<'_>>> = Vec::with_capacity(round as usize);
            for _ in 0..round {
                let len = 16 + rng.below(113);
                small.push(Some(heap.alloc(len, rng::fill_byte(tally.objects))));
                tally.object(len);
            }
            for slot in small.iter_mut().skip(1).step_by(2) {
                *slot = None; // frees every other small object
            }
            let mut large: Vec<H::Buf<'_>> = Vec::with_capacity((round / 2) as usize);
            for _ in 0..round / 2 {
                let len = 256 + rng.below(769);
                large.push(heap.alloc(len, rng::fill_byte(tally.objects)));
                tally.object(len);
            }
            for buf in small.iter().flatten().chain(large.iter()) {
                tally.touch(buf);
            }
        }
        heap.reset();
        done += round;
    }
    super::finish_tally(tally, count, &rng, heap)
}

pub fn run(config: &Config) -> Report {
    let tallies = super::on_buf_heap(config, worker, worker);
    let tally = Tally::sum(tallies);
    let large = tally.objects - tally.work; // every small object is one unit of work
    tally
        .report()
        .extra("small_objects", tally.work)
        .extra("large_objects", large)
}
