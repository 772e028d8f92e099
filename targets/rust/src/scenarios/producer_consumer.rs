//! `producer-consumer`: `threads` producer/consumer pairs. Each producer allocates messages
//! (16–4096 B) and sends them through a bounded channel of `QUEUE` slots; its consumer reads and
//! frees them, so every object is freed on another thread than the one that allocated it.

use std::sync::mpsc;

use crate::{
    Config, Report, Tally,
    rng::{self, Rng},
};

pub const QUEUE: usize = 256;

pub fn message_len(rng: &mut Rng) -> u64 {
    16 + rng.below(4081)
}

fn produce(count: u64, seed: u64, tx: mpsc::SyncSender<Vec<u8>>) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for _ in 0..count {
        let len = message_len(&mut rng);
        let message = vec![rng::fill_byte(tally.objects); len as usize];
        tally.object(len);
        if tx.send(message).is_err() {
            break; // the consumer is gone (it panicked); its panic is reported by the join
        }
    }
    tally.work = count;
    tally.draws = rng.draws;
    tally // dropping `tx` ends the consumer's loop
}

fn consume(rx: mpsc::Receiver<Vec<u8>>) -> Tally {
    let mut tally = Tally::default();
    for message in rx {
        tally.touch(&message);
        drop(message); // freed here, on the consumer's thread
    }
    tally
}

pub fn run(config: &Config) -> Report {
    let seeds = rng::worker_seeds(config.seed, config.threads);
    let tallies = std::thread::scope(|scope| {
        let pairs: Vec<_> = seeds
            .iter()
            .enumerate()
            .map(|(i, &seed)| {
                let (tx, rx) = mpsc::sync_channel(QUEUE);
                let count = rng::share(config.size, config.threads, i);
                (
                    scope.spawn(move || produce(count, seed, tx)),
                    scope.spawn(move || consume(rx)),
                )
            })
            .collect();
        pairs
            .into_iter()
            .flat_map(|(p, c)| [p.join(), c.join()])
            .map(|r| r.unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect::<Vec<_>>()
    });
    let tally = Tally::sum(tallies);
    tally
        .report()
        .extra("pairs", config.threads as u64)
        .extra("queue_capacity", QUEUE as u64)
}
