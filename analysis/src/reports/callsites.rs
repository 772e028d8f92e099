//! Call sites: allocations grouped by `stack_id` when the trace has stacks, and the bytes each
//! stack held at the live-bytes peak. Stacks are ids until the trace is symbolized
//! (`frames.parquet`); [`CallSites::symbolize`] then names every site's frames and builds the
//! two flame graphs of the report (bytes allocated, bytes live at the peak).
//!
//! ```no_run
//! let mut report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! if let Some(frames) = analysis::symbolize::StackFrames::load("trace".as_ref()).unwrap() {
//!     report.callsites.symbolize(&frames);
//! }
//! for site in &report.callsites.sites {
//!     println!("stack {}: {} bytes at {:?}", site.stack_id, site.bytes, site.site);
//! }
//! ```

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{End, Ev, Reducer, Via, peak::DENSE_STACKS};
use crate::{
    flame::{FlameNode, FlameStack},
    replay::NO_STACK,
    symbolize::StackSymbols,
    util::{Counted, TopCounter},
};

/// Distinct stacks counted exactly (the tracer's stack map is smaller).
const STACK_CAPACITY: usize = 1 << 17;
/// Stacks kept for each flame graph (the heaviest); the rest show as their callers' self time.
const FLAME_STACKS: usize = 5000;

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
    /// Bytes of this site live at the live-bytes peak.
    pub peak_bytes: u64,
    /// Symbolized frames, innermost first; empty until stacks are symbolized.
    pub frames: Vec<String>,
    /// The call site: the first frame outside the allocator, `function (file.c:12)`.
    pub site: Option<String>,
    /// Index of the call site in `frames`.
    pub site_frame: Option<usize>,
}

/// What one stack allocated and held at the peak, for the flame graphs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackWeight {
    pub stack_id: u32,
    pub bytes: u64,
    pub peak_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallSites {
    /// Whether any allocation carried a stack id.
    pub available: bool,
    pub symbolized: bool,
    pub exact: bool,
    /// Sites by bytes allocated, largest first.
    pub sites: Vec<Site>,
    /// Per-stack weights of the heaviest stacks, input of the flame graphs.
    #[serde(skip)]
    pub stacks: Vec<StackWeight>,
    /// Flame graphs (root: every stack; children: callers towards callees), once symbolized.
    pub flame_alloc: Option<FlameNode>,
    pub flame_peak: Option<FlameNode>,
    /// Why the sites could not be symbolized, when that failed.
    pub note: Option<String>,
}

impl CallSites {
    /// Fills `frames` and `site` of every site `symbols` knows and builds the flame graphs.
    pub fn symbolize(&mut self, symbols: &dyn StackSymbols) {
        for site in &mut self.sites {
            if let Some(frames) = symbols.frames(site.stack_id) {
                site.frames = frames;
            }
            let found = symbols.site(site.stack_id);
            site.site_frame = found.as_ref().map(|(i, _)| *i);
            site.site = found.map(|(_, label)| label);
        }
        let mut named: FxHashMap<u32, Vec<String>> = FxHashMap::default();
        for s in &self.stacks {
            if let Some(frames) = symbols.flame_frames(s.stack_id) {
                named.insert(s.stack_id, frames);
            }
        }
        let flame = |weight: fn(&StackWeight) -> u64| {
            let stacks = self.stacks.iter().filter_map(|s| {
                Some(FlameStack {
                    frames: named.get(&s.stack_id)?,
                    weight: weight(s),
                })
            });
            FlameNode::build("all", stacks)
        };
        self.flame_alloc = flame(|s| s.bytes);
        self.flame_peak = flame(|s| s.peak_bytes);
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

    #[inline(always)]
    fn site(&mut self, stack: u32) -> &mut SiteAgg {
        let index = stack as usize;
        if index < self.dense.len() {
            &mut self.dense[index]
        } else {
            self.new_site(stack)
        }
    }

    /// A stack id beyond the dense table: grows the table, or counts it in the sparse one.
    #[cold]
    fn new_site(&mut self, stack: u32) -> &mut SiteAgg {
        let index = stack as usize;
        if index < DENSE_STACKS {
            self.dense.resize(index + 1, SiteAgg::default());
            &mut self.dense[index]
        } else {
            self.sites.entry(stack)
        }
    }
}

/// Whether `ev` counts for its call site: it has a stack, and is not a relabel (which moves
/// attribution between layers of one call; the stack is the same).
#[inline(always)]
fn counted(ev: &Ev) -> bool {
    ev.block.stack != NO_STACK && ev.via != Via::Relabel
}

impl Reducer for CallSitesReducer {
    type Output = CallSites;

    #[inline(always)]
    fn alloc(&mut self, _bucket: usize, ev: &Ev) {
        if counted(ev) {
            let site = self.site(ev.block.stack);
            site.allocs += 1;
            site.bytes = site.bytes.saturating_add(ev.block.size);
        }
    }

    #[inline(always)]
    fn free(&mut self, _bucket: usize, ev: &Ev) {
        if counted(ev) {
            let site = self.site(ev.block.stack);
            site.frees += 1;
            site.freed_bytes = site.freed_bytes.saturating_add(ev.block.size);
            site.temporary += u64::from(ev.via == Via::Call && ev.between == 0);
        }
    }

    /// Bytes at the peak come from the peak report's stack composition (`end.peak_stacks`).
    fn finish(self, end: &End<'_>) -> CallSites {
        let peak = end.peak_stacks;
        let mut all = self.sites.top(FLAME_STACKS, |s| s.bytes);
        all.extend(
            self.dense
                .iter()
                .enumerate()
                .filter(|(_, s)| s.allocs + s.frees > 0)
                .map(|(id, s)| (id as u32, *s)),
        );
        all.sort_unstable_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        // The flame graphs take the heaviest stacks by bytes allocated and by bytes at the
        // peak (a stack can matter for one and not the other).
        let mut stacks: Vec<StackWeight> = all
            .iter()
            .map(|(stack_id, s)| StackWeight {
                stack_id: *stack_id,
                bytes: s.bytes,
                peak_bytes: peak.bytes(*stack_id),
            })
            .collect();
        let mut by_peak: Vec<StackWeight> = peak
            .iter()
            .map(|(stack_id, peak_bytes)| StackWeight {
                stack_id,
                bytes: self.dense.get(stack_id as usize).map_or(0, |s| s.bytes),
                peak_bytes,
            })
            .collect();
        by_peak.sort_unstable_by(|a, b| {
            b.peak_bytes
                .cmp(&a.peak_bytes)
                .then(a.stack_id.cmp(&b.stack_id))
        });
        by_peak.truncate(FLAME_STACKS);
        stacks.truncate(FLAME_STACKS);
        let kept: rustc_hash::FxHashSet<u32> = stacks.iter().map(|s| s.stack_id).collect();
        stacks.extend(by_peak.into_iter().filter(|s| !kept.contains(&s.stack_id)));
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
                peak_bytes: peak.bytes(stack_id),
                frames: Vec::new(),
                site: None,
                site_frame: None,
            })
            .collect::<Vec<_>>();
        CallSites {
            available,
            symbolized: false,
            exact: self.sites.exact(),
            sites,
            stacks,
            flame_alloc: None,
            flame_peak: None,
            note: None,
        }
    }
}
