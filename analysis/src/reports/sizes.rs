//! Request sizes: a log2 histogram (count and bytes) and the most frequent exact sizes.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! for top in &report.sizes.top {
//!     println!("{} bytes × {}", top.size, top.count);
//! }
//! ```

use serde::Serialize;

use super::{End, Ev, Reducer, Tally, Via};
use crate::util::{Log2Hist, TopCounter};

/// Distinct sizes counted exactly before the counter starts dropping rare ones.
const SIZE_CAPACITY: usize = 1 << 16;
/// Sizes below this are counted in a plain array (most requests are small).
const DENSE_SIZES: usize = 4096;

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
    small: Vec<u64>,
    exact: TopCounter<u64, Tally>,
    top: usize,
}

impl SizesReducer {
    pub fn new(top: usize) -> Self {
        SizesReducer {
            out: Sizes::default(),
            small: vec![0; DENSE_SIZES],
            exact: TopCounter::new(SIZE_CAPACITY),
            top,
        }
    }
}

impl Reducer for SizesReducer {
    type Output = Sizes;

    #[inline(always)]
    fn alloc(&mut self, _bucket: usize, ev: &Ev) {
        if ev.via == Via::Relabel {
            return;
        }
        let size = ev.block.size;
        self.out.allocations += 1;
        self.out.bytes += size;
        self.out.largest = self.out.largest.max(size);
        self.out.histogram.add(size, size);
        match self.small.get_mut(size as usize) {
            Some(count) => *count += 1,
            None => self.exact.entry(size).add(size),
        }
    }

    fn finish(mut self, _end: &End<'_>) -> Sizes {
        let out = &mut self.out;
        out.mean = if out.allocations > 0 {
            out.bytes as f64 / out.allocations as f64
        } else {
            0.0
        };
        out.median_bucket_low = out.histogram.quantile_low(0.5);
        let mut top: Vec<TopSize> = self
            .exact
            .top(self.top, |t| t.count)
            .into_iter()
            .map(|(size, t)| TopSize {
                size,
                count: t.count,
                bytes: t.bytes,
            })
            .collect();
        top.extend(
            self.small
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(size, &count)| TopSize {
                    size: size as u64,
                    count,
                    bytes: size as u64 * count,
                }),
        );
        top.sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.size.cmp(&b.size)));
        top.truncate(self.top);
        out.top = top;
        out.top_exact = self.exact.exact();
        out.top_error_bound = self.exact.error_bound();
        self.out
    }
}
