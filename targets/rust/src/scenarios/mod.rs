//! The six scenarios. Each worker gets its own PRNG stream and its own data structures, so the
//! counters depend only on (size, seed, threads), never on scheduling.

pub mod binary_trees;
pub mod cache;
pub mod churn;
pub mod fragmentation;
pub mod growth;
pub mod producer_consumer;

use crate::{
    Config, Tally,
    heap::{ArenaHeap, BufHeap, GlobalHeap},
    rng::{self, Rng},
};

/// Runs `worker(share, seed)` for each of `config.threads` workers (on the main thread when
/// there is one) and returns their tallies in worker order.
pub fn parallel<F>(config: &Config, worker: F) -> Vec<Tally>
where
    F: Fn(u64, u64) -> Tally + Sync,
{
    let seeds = rng::worker_seeds(config.seed, config.threads);
    let share = |i: usize| rng::share(config.size, config.threads, i);
    if config.threads == 1 {
        return vec![worker(share(0), seeds[0])];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .iter()
            .enumerate()
            .map(|(i, &seed)| {
                let worker = &worker;
                scope.spawn(move || worker(share(i), seed))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Runs a buffer-heap worker on every thread, with the arena or the global allocator as the
/// config says. Takes the worker once per heap type because a generic function cannot be
/// passed uninstantiated.
pub fn on_buf_heap(
    config: &Config,
    arena: fn(&mut ArenaHeap, u64, u64) -> Tally,
    global: fn(&mut GlobalHeap, u64, u64) -> Tally,
) -> Vec<Tally> {
    parallel(config, |count, seed| {
        if config.arena {
            arena(&mut ArenaHeap::default(), count, seed)
        } else {
            global(&mut GlobalHeap, count, seed)
        }
    })
}

/// Closes a buffer-heap worker's tally: units of work done, PRNG draws and what the heap took
/// from the global allocator.
pub fn finish_tally<H: BufHeap>(mut tally: Tally, work: u64, rng: &Rng, heap: &mut H) -> Tally {
    tally.work = work;
    tally.draws = rng.draws;
    tally.upstream = heap.upstream();
    tally
}
