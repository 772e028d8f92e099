//! Internal fragmentation: bytes an allocator hands out beyond the request, estimated per size
//! class from each allocator's rounding rules ([`crate::sizeclass`]), in total and for the
//! blocks live over time.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! println!("{:.1}% of allocated bytes are rounding", report.internal.waste_ratio * 100.0);
//! ```

use serde::Serialize;

use super::{Axis, BlockKind, End, Ev, HeapState, Reducer, Via};
use crate::{
    sizeclass::{self, Allocator},
    util::{Counted, TopCounter},
};

/// Distinct (allocator, class) pairs counted exactly (glibc chunk sizes below the mmap
/// threshold alone are 8192).
const CLASS_CAPACITY: usize = 1 << 15;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ClassAgg {
    count: u64,
    requested: u64,
    usable: u64,
}

impl Counted for ClassAgg {
    fn rank(&self) -> u64 {
        self.usable - self.requested
    }
}

/// One size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClassRow {
    pub allocator: Allocator,
    pub class_bytes: u64,
    pub count: u64,
    pub requested_bytes: u64,
    pub usable_bytes: u64,
    pub waste_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Internal {
    /// Over every allocation (Go included).
    pub requested_bytes: u64,
    pub usable_bytes: u64,
    pub waste_bytes: u64,
    /// waste / usable.
    pub waste_ratio: f64,
    /// glibc requests large enough to get their own mmap.
    pub mmapped_chunks: u64,
    /// Waste in the blocks live at the end of each bucket (native and Python; Go objects are
    /// freed in bulk, so their waste is only in the totals).
    pub live_waste: Vec<u64>,
    pub live_waste_end: u64,
    /// Highest `live_waste` at a bucket end.
    pub live_waste_peak: u64,
    /// Classes with the most waste, largest first.
    pub classes: Vec<ClassRow>,
    pub classes_exact: bool,
}

/// Classes are multiples of this many bytes in the dense tables (glibc and pymalloc: 16, Go: 8).
const fn granule(allocator: Allocator) -> u64 {
    match allocator {
        Allocator::Go => 8,
        _ => 16,
    }
}

pub struct InternalReducer {
    /// Small classes of each allocator, indexed by class / granule (no hashing on the hot path).
    dense: [Vec<ClassAgg>; 3],
    /// mmapped glibc chunks and large Go objects.
    large: TopCounter<(Allocator, u64), ClassAgg>,
    out: Internal,
    live_waste: u64,
    top: usize,
}

impl InternalReducer {
    pub fn new(axis: Axis, top: usize) -> Self {
        let dense = [
            vec![ClassAgg::default(); (sizeclass::GLIBC_MMAP_THRESHOLD / 16) as usize + 1],
            vec![ClassAgg::default(); (sizeclass::PYMALLOC_MAX / 16) as usize + 1],
            vec![ClassAgg::default(); 32768 / 8 + 1],
        ];
        InternalReducer {
            dense,
            large: TopCounter::new(CLASS_CAPACITY),
            out: Internal {
                live_waste: vec![0; axis.count],
                ..Internal::default()
            },
            live_waste: 0,
            top,
        }
    }

    #[inline]
    fn class(&mut self, allocator: Allocator, class_bytes: u64) -> &mut ClassAgg {
        let table = allocator as usize;
        let index = (class_bytes / granule(allocator)) as usize;
        if class_bytes.is_multiple_of(granule(allocator)) && index < self.dense[table].len() {
            &mut self.dense[table][index]
        } else {
            self.large.entry((allocator, class_bytes))
        }
    }
}

impl Reducer for InternalReducer {
    type Output = Internal;

    #[inline(always)]
    fn alloc(&mut self, _bucket: usize, ev: &Ev) {
        let kind = ev.block.kind;
        let size = ev.block.size;
        let allocator = kind.allocator(size);
        let class = sizeclass::estimate(allocator, size);
        let waste = class.usable.saturating_sub(size);
        if kind != BlockKind::Go {
            self.live_waste += waste;
        }
        if ev.via == Via::Relabel {
            return;
        }
        let usable = class.usable.max(size);
        self.out.requested_bytes = self.out.requested_bytes.saturating_add(size);
        self.out.usable_bytes = self.out.usable_bytes.saturating_add(usable);
        self.out.waste_bytes += waste;
        self.out.mmapped_chunks += u64::from(class.mmapped);
        let agg = self.class(allocator, class.class_bytes);
        agg.count += 1;
        agg.requested = agg.requested.saturating_add(size);
        agg.usable = agg.usable.saturating_add(usable);
    }

    #[inline(always)]
    fn free(&mut self, _bucket: usize, ev: &Ev) {
        let size = ev.block.size;
        let waste = sizeclass::estimate(ev.block.kind.allocator(size), size)
            .usable
            .saturating_sub(size);
        self.live_waste = self.live_waste.saturating_sub(waste);
    }

    fn bucket_end(&mut self, b: usize, _state: HeapState<'_>) {
        self.out.live_waste[b] = self.live_waste;
        self.out.live_waste_peak = self.out.live_waste_peak.max(self.live_waste);
    }

    fn finish(mut self, _end: &End<'_>) -> Internal {
        let out = &mut self.out;
        out.live_waste_end = self.live_waste;
        out.waste_ratio = if out.usable_bytes > 0 {
            out.waste_bytes as f64 / out.usable_bytes as f64
        } else {
            0.0
        };
        out.classes_exact = self.large.exact();
        let mut all = self.large.top(self.top, Counted::rank);
        for (allocator, table) in [Allocator::Glibc, Allocator::Pymalloc, Allocator::Go]
            .into_iter()
            .zip(&self.dense)
        {
            all.extend(
                table
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.count > 0)
                    .map(|(i, a)| ((allocator, i as u64 * granule(allocator)), *a)),
            );
        }
        all.sort_unstable_by(|a, b| b.1.rank().cmp(&a.1.rank()).then(a.0.cmp(&b.0)));
        all.truncate(self.top);
        out.classes = all
            .into_iter()
            .map(|((allocator, class_bytes), agg)| ClassRow {
                allocator,
                class_bytes,
                count: agg.count,
                requested_bytes: agg.requested,
                usable_bytes: agg.usable,
                waste_bytes: agg.usable - agg.requested,
            })
            .collect();
        self.out
    }
}
