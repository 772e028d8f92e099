//! Request sizes: a log2 histogram (count and bytes) and the most frequent exact sizes.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! for top in &report.sizes.top {
//!     println!("{} bytes × {}", top.size, top.count);
//! }
//! ```

use serde::Serialize;

use super::{Chunk, EvKind, HeapState, Reducer, Tally};
use crate::util::{Log2Hist, TopCounter};

/// Distinct sizes counted exactly before the counter starts dropping rare ones.
const SIZE_CAPACITY: usize = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TopSize {
    pub size: u64,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sizes {
    /// Allocations (alloc rows and reallocs that made a new block), Go included.
    pub allocations: u64,
    pub bytes: u64,
    pub mean: f64,
    pub median_bucket_low: Option<u64>,
    pub largest: u64,
    /// Log2 buckets of the requested size (bucket k holds [2^(k−1), 2^k)).
    pub histogram: Log2Hist,
    pub top: Vec<TopSize>,
    /// Whether `top` counts are exact (else each may be low by at most `top_error_bound`).
    pub top_exact: bool,
    pub top_error_bound: u64,
}

pub struct SizesReducer {
    out: Sizes,
    exact: TopCounter<u64, Tally>,
    top: usize,
}

impl SizesReducer {
    pub fn new(top: usize) -> Self {
        SizesReducer { out: Sizes::default(), exact: TopCounter::new(SIZE_CAPACITY), top }
    }
}

impl Reducer for SizesReducer {
    type Output = Sizes;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        for ev in chunk.evs.iter().filter(|e| e.kind == EvKind::Alloc) {
            let size = ev.block.size;
            self.out.allocations += 1;
            self.out.bytes += size;
            self.out.largest = self.out.largest.max(size);
            self.out.histogram.add(size, size);
            self.exact.entry(size).add(size);
        }
    }

    fn finish(mut self, _end: &End<'_>) -> Sizes {
        let out = &mut self.out;
        out.mean = if out.allocations > 0 { out.bytes as f64 / out.allocations as f64 } else { 0.0 };
        out.median_bucket_low = out.histogram.quantile_low(0.5);
        out.top = self.exact.top(self.top, |t| t.count).into_iter().map(|(size, t)| TopSize { size, count: t.count, bytes: t.bytes }).collect();
        out.top_exact = self.exact.exact();
        out.top_error_bound = self.exact.error_bound();
        self.out
    }
}
