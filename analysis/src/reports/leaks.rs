//! Leaks: native and Python blocks still live when the trace ends, the largest ones and the
//! call sites holding the most. Go objects have no free rows (the GC frees them), so they are
//! never listed; the Go heap at the end is in the timeline.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! println!("{} blocks ({} bytes) never freed", report.leaks.blocks, report.leaks.bytes);
//! ```

use std::cmp::Reverse;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{BlockKind, End, Reducer, Tally, stack};
use crate::util::TopK;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeakBlock {
    pub pid: u32,
    pub addr: u64,
    pub size: u64,
    /// When its allocation (or realloc chain) started, ns since the trace start.
    pub t_ns: u64,
    pub tid: u32,
    pub func: String,
    pub kind: BlockKind,
    pub stack_id: Option<u32>,
    pub reallocs: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeakSite {
    pub func: String,
    pub stack_id: Option<u32>,
    pub blocks: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Leaks {
    pub blocks: u64,
    pub bytes: u64,
    /// The largest live blocks (ties: lowest pid, then address).
    pub largest: Vec<LeakBlock>,
    /// Sites (function and stack) holding the most live bytes.
    pub sites: Vec<LeakSite>,
}

pub struct LeaksReducer {
    max_blocks: usize,
    max_sites: usize,
}

impl LeaksReducer {
    pub fn new(max_blocks: usize, max_sites: usize) -> Self {
        LeaksReducer {
            max_blocks,
            max_sites,
        }
    }
}

impl Reducer for LeaksReducer {
    type Output = Leaks;

    fn finish(self, end: &End<'_>) -> Leaks {
        let mut out = Leaks::default();
        let mut largest = TopK::new(self.max_blocks);
        let mut sites: FxHashMap<(u16, u32), Tally> = FxHashMap::default();
        for proc in end.state.processes() {
            let pid = proc.pid();
            for (addr, block) in proc.live_blocks() {
                out.blocks += 1;
                out.bytes += block.size;
                sites
                    .entry((block.func, block.stack))
                    .or_default()
                    .add(block.size);
                let key = (block.size, Reverse(pid), Reverse(addr));
                if largest.would_keep(&(key, *block)) {
                    largest.push((key, *block));
                }
            }
        }
        out.largest = largest
            .into_sorted()
            .into_iter()
            .map(|((size, Reverse(pid), Reverse(addr)), b)| LeakBlock {
                pid,
                addr,
                size,
                t_ns: end.rel(b.ts),
                tid: b.tid,
                func: end.func(b.func),
                kind: b.kind,
                stack_id: stack(b.stack),
                reallocs: b.chain,
            })
            .collect();
        let mut sites: Vec<((u16, u32), Tally)> = sites.into_iter().collect();
        sites.sort_unstable_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
        out.sites = sites
            .into_iter()
            .take(self.max_sites)
            .map(|((func, st), t)| LeakSite {
                func: end.func(func),
                stack_id: stack(st),
                blocks: t.count,
                bytes: t.bytes,
            })
            .collect();
        out
    }
}
