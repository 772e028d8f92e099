//! realloc: how often it resized in place or moved (copying), growth versus shrinking, bytes
//! copied, and realloc chains (an allocation resized again and again, like a growing buffer).
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! let r = &report.reallocs;
//! println!("{} reallocs, {} moved, {} bytes copied", r.count, r.moved, r.bytes_copied);
//! ```

use std::cmp::Reverse;

use serde::Serialize;

use super::{Block, BlockKind, Chunk, End, Ev, EvKind, Reducer, Via, stack};
use crate::util::TopK;

/// Chain lengths are counted exactly up to this; longer ones share the last bucket.
pub const MAX_CHAIN_BUCKET: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub pid: u32,
    pub reallocs: u16,
    pub first_size: u64,
    pub last_size: u64,
    pub func: String,
    pub stack_id: Option<u32>,
    /// ns since the trace start.
    pub start_ns: u64,
    /// When the chain's block was freed; `None` when still live at the end.
    pub end_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reallocs {
    /// reallocs that resized a known block.
    pub count: u64,
    pub in_place: u64,
    pub moved: u64,
    pub grew: u64,
    pub shrank: u64,
    /// Bytes a moving realloc copies: min(old size, new size).
    pub bytes_copied: u64,
    /// Chains by length: index n counts chains of n reallocs (the last index: n ≥ 64).
    pub chain_lengths: Vec<u64>,
    pub chains: u64,
    /// The longest chains.
    pub longest: Vec<Chain>,
}

type ChainKey = (u16, u64, Reverse<u32>, Reverse<u64>);

pub struct ReallocsReducer {
    out: Reallocs,
    longest: TopK<(ChainKey, Block, Option<u64>)>,
}

impl ReallocsReducer {
    pub fn new(top: usize) -> Self {
        ReallocsReducer {
            out: Reallocs {
                chain_lengths: vec![0; MAX_CHAIN_BUCKET + 1],
                ..Reallocs::default()
            },
            longest: TopK::new(top),
        }
    }

    fn chain_end(&mut self, pid: u32, block: &Block, end_ns: Option<u64>) {
        if block.chain == 0 || block.kind == BlockKind::PyArena {
            return;
        }
        self.out.chains += 1;
        self.out.chain_lengths[usize::from(block.chain).min(MAX_CHAIN_BUCKET)] += 1;
        let key = (block.chain, block.size, Reverse(pid), Reverse(block.ts));
        let item = (key, *block, end_ns);
        if self.longest.would_keep(&item) {
            self.longest.push(item);
        }
    }
}

impl Reducer for ReallocsReducer {
    type Output = Reallocs;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        for &i in chunk.realloc_index {
            let ev = &chunk.evs[i as usize];
            // The replay emits a realloc as Free(old) immediately followed by Alloc(new).
            let old = match i.checked_sub(1).map(|j| &chunk.evs[j as usize]) {
                Some(prev) if prev.kind == EvKind::Free && prev.via == Via::Realloc => {
                    prev.block.size
                }
                _ => continue,
            };
            let out = &mut self.out;
            let new = ev.block.size;
            out.count += 1;
            if ev.moved {
                out.moved += 1;
                out.bytes_copied = out.bytes_copied.saturating_add(old.min(new));
            } else {
                out.in_place += 1;
            }
            out.grew += u64::from(new > old);
            out.shrank += u64::from(new < old);
        }
    }

    #[inline(always)]
    fn free(&mut self, _bucket: usize, ev: &Ev) {
        if matches!(ev.via, Via::Call | Via::Implicit) && ev.block.chain > 0 {
            self.chain_end(ev.pid, &ev.block, Some(ev.ts));
        }
    }

    fn finish(mut self, end: &End<'_>) -> Reallocs {
        for proc in end.state.processes() {
            for (_, block) in proc.live_blocks() {
                self.chain_end(proc.pid(), block, None);
            }
        }
        let trim = self
            .out
            .chain_lengths
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0, |k| k + 1);
        self.out.chain_lengths.truncate(trim);
        self.out.longest = self
            .longest
            .into_sorted()
            .into_iter()
            .map(|((_, _, Reverse(pid), _), b, end_ns)| Chain {
                pid,
                reallocs: b.chain,
                first_size: b.first_size,
                last_size: b.size,
                func: end.func(b.func),
                stack_id: stack(b.stack),
                start_ns: end.rel(b.ts),
                end_ns: end_ns.map(|t| end.rel(t)),
            })
            .collect();
        self.out
    }
}
