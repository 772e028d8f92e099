//! `cache`: a long-lived LRU cache of `CAPACITY` entries over `KEYS` keys with a skewed key
//! distribution. A miss allocates the entry's value (16–1024 B) and inserts it as most recent;
//! when that makes `CAPACITY + 1` entries the least recent is evicted (its value freed).
//!
//! The index is a `HashMap` into a slab of entries linked by index, both sized up front, so the
//! values are the cache's only allocations after start-up.

use std::collections::HashMap;

use crate::{
    Config, Report, Tally,
    rng::{self, Rng},
};

pub const CAPACITY: usize = 4096;
pub const KEYS: u64 = 16384;
const NIL: usize = usize::MAX;

/// Skewed towards small keys: two draws.
pub fn next_key(rng: &mut Rng) -> u64 {
    let bound = 1 + rng.below(KEYS);
    rng.below(bound)
}

pub fn value_len(rng: &mut Rng) -> u64 {
    16 + rng.below(1009)
}

struct Entry {
    key: u64,
    value: Vec<u8>,
    prev: usize,
    next: usize,
}

/// Most recent at `head`, least recent at `tail`.
struct Lru {
    index: HashMap<u64, usize>,
    slab: Vec<Entry>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
}

impl Lru {
    fn new() -> Self {
        Self {
            // Twice the entries: with deletions, hashbrown then rehashes in place instead of
            // growing.
            index: HashMap::with_capacity(2 * (CAPACITY + 1)),
            slab: Vec::with_capacity(CAPACITY + 1),
            free: Vec::with_capacity(CAPACITY + 1),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.slab[i].prev, self.slab[i].next);
        if prev == NIL {
            self.head = next
        } else {
            self.slab[prev].next = next
        }
        if next == NIL {
            self.tail = prev
        } else {
            self.slab[next].prev = prev
        }
    }

    fn push_front(&mut self, i: usize) {
        self.slab[i].prev = NIL;
        self.slab[i].next = self.head;
        if self.head == NIL {
            self.tail = i
        } else {
            self.slab[self.head].prev = i
        }
        self.head = i;
    }

    /// The value of `key`, now most recent.
    fn get(&mut self, key: u64) -> Option<&[u8]> {
        let i = *self.index.get(&key)?;
        self.unlink(i);
        self.push_front(i);
        Some(&self.slab[i].value)
    }

    /// Inserts a new key as most recent; returns whether that evicted the least recent entry.
    fn insert(&mut self, key: u64, value: Vec<u8>) -> bool {
        let entry = Entry {
            key,
            value,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i] = entry;
                i
            }
            None => {
                self.slab.push(entry);
                self.slab.len() - 1
            }
        };
        self.index.insert(key, i);
        self.push_front(i);
        if self.index.len() <= CAPACITY {
            return false;
        }
        let lru = self.tail;
        self.unlink(lru);
        self.index.remove(&self.slab[lru].key);
        self.slab[lru].value = Vec::new(); // frees the evicted value
        self.free.push(lru);
        true
    }
}

#[derive(Clone, Copy, Default)]
struct Stats {
    hits: u64,
    evictions: u64,
}

fn worker(count: u64, seed: u64) -> (Tally, Stats) {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut stats = Stats::default();
    let mut lru = Lru::new();
    for _ in 0..count {
        let key = next_key(&mut rng);
        if let Some(value) = lru.get(key) {
            tally.touch(value);
            stats.hits += 1;
            continue;
        }
        let len = value_len(&mut rng);
        let value = vec![rng::fill_byte(tally.objects); len as usize];
        tally.object(len);
        tally.touch(&value);
        stats.evictions += u64::from(lru.insert(key, value));
    }
    tally.work = count;
    tally.draws = rng.draws;
    (tally, stats)
}

pub fn run(config: &Config) -> Report {
    let stats = std::sync::Mutex::new(Stats::default());
    let tallies = super::parallel(config, |count, seed| {
        let (tally, s) = worker(count, seed);
        let mut total = stats.lock().unwrap_or_else(|e| e.into_inner());
        total.hits += s.hits;
        total.evictions += s.evictions;
        tally
    });
    let stats = stats.into_inner().unwrap_or_else(|e| e.into_inner());
    let tally = Tally::sum(tallies);
    tally
        .report()
        .extra("capacity", CAPACITY as u64)
        .extra("hits", stats.hits)
        .extra("misses", tally.objects)
        .extra("evictions", stats.evictions)
}
