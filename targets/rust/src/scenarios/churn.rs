//! `churn`: many short-lived objects of mixed sizes. Rounds of `ROUND` allocations; each new
//! object replaces a random one of `SLOTS` slots (freeing the old one), and a round ends by
//! freeing what is left (the arena resets there).

use crate::{
    Config, Report, Tally,
    heap::BufHeap,
    rng::{self, Rng},
};

pub const ROUND: u64 = 4096;
pub const SLOTS: u64 = 256;

fn worker<H: BufHeap>(heap: &mut H, count: u64, seed: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    while tally.objects < count {
        let round = ROUND.min(count - tally.objects);
        {
            let heap: &H = heap;
            let mut slots: Vec<Option<H::Buf<'_>>> = (0..SLOTS).map(|_| None).collect();
            for _ in 0..round {
                let len = rng::mixed_size(&mut rng);
                let slot = rng.below(SLOTS) as usize;
                let buf = heap.alloc(len, rng::fill_byte(tally.objects));
                tally.object(len);
                tally.touch(&buf);
                slots[slot] = Some(buf); // frees the slot's previous object
            }
        }
        heap.reset();
    }
    super::finish_tally(tally, count, &rng, heap)
}

pub fn run(config: &Config) -> Report {
    let tallies = super::on_buf_heap(config, worker, worker);
    Tally::sum(tallies).report()
}
