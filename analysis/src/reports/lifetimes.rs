//! Lifetimes of freed allocations, in wall time and in allocations made in between, and the
//! temporary and short-lived allocations. A realloc chain is one allocation: its lifetime runs
//! from the first alloc to the final free.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! println!("{} temporary allocations", report.lifetimes.temporary.count);
//! ```

use serde::Serialize;

use super::{End, Ev, Reducer, Tally, Via};
use crate::util::Log2Hist;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FuncTally {
    pub func: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Lifetimes {
    /// Allocations that ended with a free.
    pub freed: u64,
    /// Log2 buckets of the lifetime in ns (count and bytes).
    pub wall_ns: Log2Hist,
    /// Log2 buckets of the allocations the process made during the lifetime.
    pub allocs_between: Log2Hist,
    pub p50_ns: Option<u64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    /// Freed before the process made any other allocation (heaptrack's definition).
    pub temporary: Tally,
    /// temporary / all allocations.
    pub temporary_ratio: f64,
    pub temporary_sizes: Log2Hist,
    pub temporary_funcs: Vec<FuncTally>,
    /// Lifetime below `short_lived_ns`.
    pub short_lived: Tally,
    pub short_lived_ns: u64,
}

pub struct LifetimesReducer {
    out: Lifetimes,
    allocations: u64,
    temporary_funcs: Vec<Tally>,
}

impl LifetimesReducer {
    pub fn new(short_lived_ns: u64) -> Self {
        LifetimesReducer {
            out: Lifetimes {
                short_lived_ns,
                ..Lifetimes::default()
            },
            allocations: 0,
            temporary_funcs: Vec::new(),
        }
    }
}

impl Reducer for LifetimesReducer {
    type Output = Lifetimes;

    #[inline(always)]
    fn alloc(&mut self, _bucket: usize, ev: &Ev) {
        self.allocations += u64::from(ev.via == Via::Call);
    }

    /// Branch-free: whether a free ends an allocation (not a realloc's), is temporary or
    /// short-lived varies from event to event, and mispredicting it cost more than adding
    /// zeros.
    #[inline(always)]
    fn free(&mut self, _bucket: usize, ev: &Ev) {
        let out = &mut self.out;
        let size = ev.block.size;
        let lifetime = ev.ts.saturating_sub(ev.block.ts);
        let ended = u64::from(ev.via == Via::Call);
        out.freed += ended;
        out.wall_ns.add_if(ended, lifetime, size);
        out.allocs_between.add_if(ended, ev.between, size);
        let temporary = ended & u64::from(ev.between == 0);
        out.temporary.add_if(temporary, size);
        out.temporary_sizes.add_if(temporary, size, size);
        let f = usize::from(ev.block.func);
        if self.temporary_funcs.len() <= f {
            self.temporary_funcs.resize(f + 1, Tally::default());
        }
        self.temporary_funcs[f].add_if(temporary, size);
        out.short_lived
            .add_if(ended & u64::from(lifetime < out.short_lived_ns), size);
    }

    fn finish(mut self, end: &End<'_>) -> Lifetimes {
        let out = &mut self.out;
        out.p50_ns = out.wall_ns.quantile_low(0.5);
        out.p90_ns = out.wall_ns.quantile_low(0.9);
        out.p99_ns = out.wall_ns.quantile_low(0.99);
        out.temporary_ratio = if self.allocations > 0 {
            out.temporary.count as f64 / self.allocations as f64
        } else {
            0.0
        };
        let mut funcs: Vec<FuncTally> = self
            .temporary_funcs
            .iter()
            .enumerate()
            .filter(|(_, t)| t.count > 0)
            .map(|(f, t)| FuncTally {
                func: end.func(f as u16),
                count: t.count,
                bytes: t.bytes,
            })
            .collect();
        funcs.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.func.cmp(&b.func)));
        out.temporary_funcs = funcs;
        self.out
    }
}
