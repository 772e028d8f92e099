//! Call sites: allocations grouped by `stack_id` when the trace has stacks. Stacks are ids
//! until `stacks.parquet` exists; [`CallSites::symbolize`] is the hook that will fill
//! [`Site::frames`] from it.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! for site in &report.callsites.sites {
//!     println!("stack {}: {} bytes", site.stack_id, site.bytes);
//! }
//! ```

use serde::Serialize;

use super::{Chunk, End, Ev, Reducer, Via};
use crate::{
    replay::NO_STACK,
    util::{Counted, TopCounter},
};

/// Distinct stacks counted exactly (the tracer's stack map is smaller).
const STACK_CAPACITY: usize = 1 << 17;
/// Stack ids below this (the tracer numbers stacks densely from 0) index a plain array.
const DENSE_STACKS: usize = 1 << 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SiteAgg {
    allocs: u64,
    bytes: u64,
    frees: u64,
    freed_bytes: u64,
    temporary: u64,
}

impl Counted for SiteAgg {
    fn rank(&self) -> u64 {
        self.bytes
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Site {
    pub stack_id: u32,
    pub allocs: u64,
    pub bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    /// Allocated minus freed: bytes this site still holds at the end.
    pub live_bytes: u64,
    pub temporary: u64,
    /// Symbolized frames, innermost first; empty until stacks are symbolized.
    pub frames: Vec<String>,
}

/// Resolves a stack id to frames. Implemented by the stacks table once the tracer writes
/// `stacks.parquet`.
pub trait StackSymbols {
    fn frames(&self, stack_id: u32) -> Option<Vec<String>>;
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallSites {
    /// Whether any allocation carried a stack id.
    pub available: bool,
    pub symbolized: bool,
    pub exact: bool,
    /// Sites by bytes allocated, largest first.
    pub sites: Vec<Site>,
}

impl CallSites {
    /// Fills `frames` of every site `symbols` knows.
    pub fn symbolize(&mut self, symbols: &dyn StackSymbols) {
        for site in &mut self.sites {
            if let Some(frames) = symbols.frames(site.stack_id) {
                site.frames = frames;
            }
        }
        self.symbolized = true;
    }
}

pub struct CallSitesReducer {
    dense: Vec<SiteAgg>,
    sites: TopCounter<u32, SiteAgg>,
    top: usize,
}

impl CallSitesReducer {
    pub fn new(top: usize) -> Self {
        CallSitesReducer {
            dense: Vec::new(),
            sites: TopCounter::new(STACK_CAPACITY),
            top,
        }
    }

    #[inline]
    fn site(&mut self, stack: u32) -> &mut SiteAgg {
        let index = stack as usize;
        if index < DENSE_STACKS {
            if index >= self.dense.len() {
                self.dense.resize(index + 1, SiteAgg::default());
            }
            &mut self.dense[index]
        } else {
            self.sites.entry(stack)
        }
    }
}

impl Reducer for CallSitesReducer {
    type Output = CallSites;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        // A relabel moves attribution between layers of one call; the stack is the same.
        let counted = |ev: &&Ev| ev.block.stack != NO_STACK && ev.via != Via::Relabel;
        for ev in chunk.allocs().filter(counted) {
            let site = self.site(ev.block.stack);
            site.allocs += 1;
            site.bytes = site.bytes.saturating_add(ev.block.size);
        }
        for ev in chunk.frees().filter(counted) {
            let site = self.site(ev.block.stack);
            site.frees += 1;
            site.freed_bytes = site.freed_bytes.saturating_add(ev.block.size);
            site.temporary += u64::from(ev.via == Via::Call && ev.between == 0);
        }
    }

    fn finish(self, _end: &End<'_>) -> CallSites {
        let mut all = self.sites.top(self.top, |s| s.bytes);
        all.extend(
            self.dense
                .iter()
                .enumerate()
                .filter(|(_, s)| s.allocs + s.frees > 0)
                .map(|(id, s)| (id as u32, *s)),
        );
        all.sort_unstable_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        all.truncate(self.top);
        let available = !all.is_empty();
        let sites = all
            .into_iter()
            .map(|(stack_id, s)| Site {
                stack_id,
                allocs: s.allocs,
                bytes: s.bytes,
                frees: s.frees,
                freed_bytes: s.freed_bytes,
                live_bytes: s.bytes.saturating_sub(s.freed_bytes),
                temporary: s.temporary,
                frames: Vec::new(),
            })
            .collect::<Vec<_>>();
        CallSites {
            available,
            symbolized: false,
            exact: self.sites.exact(),
            sites,
        }
    }
}
