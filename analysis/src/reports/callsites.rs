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

use super::{Chunk, End, EvKind, Reducer, Via};
use crate::{
    replay::NO_STACK,
    util::{Counted, TopCounter},
};

/// Distinct stacks counted exactly (the tracer's stack map is smaller).
const STACK_CAPACITY: usize = 1 << 17;

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
    sites: TopCounter<u32, SiteAgg>,
    top: usize,
}

impl CallSitesReducer {
    pub fn new(top: usize) -> Self {
        CallSitesReducer { sites: TopCounter::new(STACK_CAPACITY), top }
    }
}

impl Reducer for CallSitesReducer {
    type Output = CallSites;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        for ev in chunk.evs {
            if ev.block.stack == NO_STACK {
                continue;
            }
            let site = self.sites.entry(ev.block.stack);
            match ev.kind {
                EvKind::Alloc => {
                    site.allocs += 1;
                    site.bytes += ev.block.size;
                }
                EvKind::Free => {
                    site.frees += 1;
                    site.freed_bytes += ev.block.size;
                    site.temporary += u64::from(ev.via == Via::Call && ev.between == 0);
                }
            }
        }
    }

    fn finish(self, _end: &End<'_>) -> CallSites {
        let sites = self
            .sites
            .top(self.top, |s| s.bytes)
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
        CallSites { available: self.sites.len() > 0, symbolized: false, exact: self.sites.exact(), sites }
    }
}
