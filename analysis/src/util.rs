//! Small bounded-memory aggregates shared by the reports.

use std::{cmp::Reverse, collections::BinaryHeap, hash::Hash};

use rustc_hash::FxHashMap;
use serde::Serialize;

/// Number of log2 buckets: bucket 0 holds 0, bucket k (1..=64) holds [2^(k−1), 2^k).
pub const LOG2_BUCKETS: usize = 65;

/// The log2 bucket of `value`.
#[inline]
pub fn log2_bucket(value: u64) -> usize {
    (u64::BITS - value.leading_zeros()) as usize
}

/// Inclusive lower bound of log2 bucket `k`.
pub fn log2_bucket_low(k: usize) -> u64 {
    if k == 0 { 0 } else { 1u64 << (k - 1).min(63) }
}

/// A histogram over log2 buckets, counting events and summing a weight (usually bytes).
/// Fixed arrays: a bucket index is at most 64, so `add` indexes without a bounds check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Log2Hist {
    #[serde(serialize_with = "as_seq")]
    pub counts: [u64; LOG2_BUCKETS],
    #[serde(serialize_with = "as_seq")]
    pub sums: [u64; LOG2_BUCKETS],
}

/// Serializes an array of any length as a sequence (serde derives only go up to 32).
fn as_seq<S: serde::Serializer>(values: &[u64; LOG2_BUCKETS], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values)
}

impl Default for Log2Hist {
    fn default() -> Self {
        Log2Hist {
            counts: [0; LOG2_BUCKETS],
            sums: [0; LOG2_BUCKETS],
        }
    }
}

impl Log2Hist {
    #[inline]
    pub fn add(&mut self, value: u64, weight: u64) {
        self.add_if(1, value, weight);
    }

    /// Adds `value` when `counted` is 1, nothing when it is 0, without a branch.
    #[inline]
    pub fn add_if(&mut self, counted: u64, value: u64, weight: u64) {
        let k = log2_bucket(value);
        self.counts[k] += counted;
        self.sums[k] = self.sums[k].wrapping_add(weight * counted);
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Lower bound of the bucket holding the `q`-quantile (0 ≤ q ≤ 1) of the counted values;
    /// `None` when empty. Exact to within a factor of two.
    pub fn quantile_low(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (k, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(log2_bucket_low(k));
            }
        }
        None
    }

    /// Index one past the last non-empty bucket (to trim trailing empty buckets in output).
    pub fn used_len(&self) -> usize {
        self.counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0, |k| k + 1)
    }
}

/// Counts per key, exact while fewer than `capacity` distinct keys were seen. Past that, the
/// smallest half is dropped and `error_bound` records the largest count that may have been lost
/// for any key (a key's true count is at most `count + error_bound`). Memory stays bounded
/// whatever the trace length.
#[derive(Clone, Debug)]
pub struct TopCounter<K: Hash + Eq + Copy + Ord, V: Counted> {
    map: FxHashMap<K, V>,
    capacity: usize,
    error_bound: u64,
}

/// A value a [`TopCounter`] can rank and prune.
pub trait Counted: Default + Copy {
    fn rank(&self) -> u64;
}

impl<K: Hash + Eq + Copy + Ord, V: Counted> TopCounter<K, V> {
    pub fn new(capacity: usize) -> Self {
        TopCounter {
            map: FxHashMap::default(),
            capacity: capacity.max(2),
            error_bound: 0,
        }
    }

    #[inline]
    pub fn entry(&mut self, key: K) -> &mut V {
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.prune();
        }
        self.map.entry(key).or_default()
    }

    fn prune(&mut self) {
        let mut ranks: Vec<u64> = self.map.values().map(Counted::rank).collect();
        let middle = ranks.len() / 2;
        let (_, &mut cut, _) = ranks.select_nth_unstable(middle);
        self.map.retain(|_, v| v.rank() > cut);
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.error_bound = self.error_bound.max(cut);
    }

    /// Whether every count is exact.
    pub fn exact(&self) -> bool {
        self.error_bound == 0
    }

    pub fn error_bound(&self) -> u64 {
        self.error_bound
    }

    /// The `n` highest-ranked entries, ties broken by key so output is deterministic.
    pub fn top(&self, n: usize, rank: impl Fn(&V) -> u64) -> Vec<(K, V)> {
        let mut all: Vec<(K, V)> = self.map.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort_unstable_by(|a, b| rank(&b.1).cmp(&rank(&a.1)).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

/// Keeps the `n` largest items seen (by `Ord`), in bounded memory.
#[derive(Clone, Debug)]
pub struct TopK<T: Ord> {
    heap: BinaryHeap<Reverse<T>>,
    n: usize,
}

impl<T: Ord> TopK<T> {
    pub fn new(n: usize) -> Self {
        TopK {
            heap: BinaryHeap::with_capacity(n.min(4096) + 1),
            n,
        }
    }

    #[inline]
    pub fn push(&mut self, item: T) {
        if self.n == 0 {
            return;
        }
        if self.heap.len() < self.n {
            self.heap.push(Reverse(item));
        } else if let Some(mut smallest) = self.heap.peek_mut()
            && item > smallest.0
        {
            *smallest = Reverse(item);
        }
    }

    /// Whether `item` would be kept (cheap pre-check before building an expensive item).
    #[inline]
    pub fn would_keep(&self, item: &T) -> bool {
        self.heap.len() < self.n || self.heap.peek().is_some_and(|s| *item > s.0)
    }

    /// The kept items, largest first.
    pub fn into_sorted(self) -> Vec<T> {
        let mut v: Vec<T> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

/// Interns strings into dense ids, so per-row data carries a `u16` instead of a string.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    ids: FxHashMap<String, u16>,
    names: Vec<String>,
    overflow: Option<u16>,
}

impl Interner {
    /// Distinct names kept; the last slot is the shared overflow name.
    const CAPACITY: usize = u16::MAX as usize;

    /// The id of `name`. Past 65534 distinct names every new one maps to one overflow id
    /// (`"…"`), which keeps memory bounded if a damaged trace holds garbage strings.
    pub fn id(&mut self, name: &str) -> u16 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        if self.names.len() + 1 >= Self::CAPACITY {
            return *self.overflow.get_or_insert_with(|| {
                self.names.push("…".to_owned());
                (self.names.len() - 1) as u16
            });
        }
        let id = self.names.len() as u16;
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    pub fn name(&self, id: u16) -> &str {
        self.names.get(usize::from(id)).map_or("?", String::as_str)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Default)]
    struct C(u64);
    impl Counted for C {
        fn rank(&self) -> u64 {
            self.0
        }
    }

    /// Check that log2 buckets put powers of two at the start of their bucket.
    #[test]
    fn log2_buckets() {
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 1);
        assert_eq!(log2_bucket(2), 2);
        assert_eq!(log2_bucket(3), 2);
        assert_eq!(log2_bucket(4), 3);
        assert_eq!(log2_bucket(u64::MAX), 64);
        for k in 0..LOG2_BUCKETS {
            assert_eq!(log2_bucket(log2_bucket_low(k)), k);
        }
    }

    /// Check that the bounded counter is exact under capacity and keeps heavy hitters past it.
    #[test]
    fn top_counter_keeps_heavy_hitters() {
        let mut c: TopCounter<u64, C> = TopCounter::new(8);
        for _ in 0..100 {
            c.entry(1).0 += 1;
        }
        for k in 0..5 {
            c.entry(100 + k).0 += 1;
        }
        assert!(c.exact());
        for k in 0..1000 {
            c.entry(1000 + k).0 += 1;
            c.entry(1).0 += 1;
        }
        assert!(!c.exact());
        assert!(c.map.len() <= 8);
        assert_eq!(c.top(1, |v| v.0)[0].0, 1);
        assert_eq!(c.top(1, |v| v.0)[0].1.0, 1100);
    }

    /// Check that TopK keeps the largest items in descending order.
    #[test]
    fn top_k() {
        let mut t = TopK::new(3);
        for v in [5, 1, 9, 3, 7, 2] {
            t.push(v);
        }
        assert_eq!(t.into_sorted(), vec![9, 7, 5]);
    }
}
