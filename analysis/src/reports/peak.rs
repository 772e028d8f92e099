//! The peak: when total live bytes were highest and what was live then, by size, function,
//! allocator layer and stack.
//!
//! The composition at the peak is exact without snapshots: the reducer keeps the composition
//! at the last peak (`at_peak`) and the change since (`since`). A new peak folds `since` into
//! `at_peak`, touching only the keys changed since the previous peak, so the cost per event is
//! constant however long the trace.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! let p = &report.peak;
//! println!("peak {} bytes at {} ns", p.live_bytes, p.t_ns);
//! ```

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{BlockKind, Chunk, End, EvKind, Reducer};
use crate::{
    replay::NO_STACK,
    util::{LOG2_BUCKETS, log2_bucket, log2_bucket_low},
};

/// Stack ids below this index a plain array: the tracer numbers stacks densely from 0.
pub(crate) const DENSE_STACKS: usize = 1 << 16;
/// Larger stack ids (another producer's) tracked in the composition; the rest share one
/// "other" slot.
const SPARSE_STACKS: usize = 1 << 16;
const OTHER_STACKS: usize = DENSE_STACKS + SPARSE_STACKS;
const KINDS: [BlockKind; 6] = [
    BlockKind::Native,
    BlockKind::PyObj,
    BlockKind::PyMem,
    BlockKind::PyRaw,
    BlockKind::PyArena,
    BlockKind::Go,
];

/// Bytes and blocks per key of one dimension, at the peak and changed since.
#[derive(Debug, Default)]
struct Dimension {
    at_peak: Vec<(i64, i64)>,
    since: Vec<(i64, i64)>,
    dirty: Vec<bool>,
    touched: Vec<u32>,
}

impl Dimension {
    #[inline]
    fn add(&mut self, key: usize, bytes: i64, blocks: i64) {
        if key >= self.since.len() {
            self.grow(key);
        }
        let slot = &mut self.since[key];
        slot.0 += bytes;
        slot.1 += blocks;
        if !self.dirty[key] {
            self.dirty[key] = true;
            self.touched.push(key as u32);
        }
    }

    #[cold]
    fn grow(&mut self, key: usize) {
        self.at_peak.resize(key + 1, (0, 0));
        self.since.resize(key + 1, (0, 0));
        self.dirty.resize(key + 1, false);
    }

    fn fold(&mut self) {
        for &key in &self.touched {
            let key = key as usize;
            let since = std::mem::take(&mut self.since[key]);
            self.at_peak[key].0 += since.0;
            self.at_peak[key].1 += since.1;
            self.dirty[key] = false;
        }
        self.touched.clear();
    }

    /// Non-empty keys at the peak, largest first.
    fn rows(&self) -> Vec<(usize, u64, u64)> {
        let mut rows: Vec<(usize, u64, u64)> = self
            .at_peak
            .iter()
            .enumerate()
            .filter(|(_, v)| v.0 > 0 || v.1 > 0)
            .map(|(k, v)| (k, v.0.max(0) as u64, v.1.max(0) as u64))
            .collect();
        rows.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        rows
    }
}

/// Stack id → slot of the stack dimension: the id itself below [`DENSE_STACKS`] (no lookup per
/// event), else a slot handed out in order of appearance.
#[derive(Clone, Debug, Default)]
struct StackSlots {
    sparse: FxHashMap<u32, u32>,
    sparse_ids: Vec<u32>,
}

impl StackSlots {
    #[inline]
    fn slot(&mut self, stack: u32) -> usize {
        let index = stack as usize;
        if index < DENSE_STACKS {
            return index;
        }
        if let Some(&slot) = self.sparse.get(&stack) {
            return slot as usize;
        }
        if self.sparse_ids.len() >= SPARSE_STACKS {
            return OTHER_STACKS;
        }
        let slot = (DENSE_STACKS + self.sparse_ids.len()) as u32;
        self.sparse.insert(stack, slot);
        self.sparse_ids.push(stack);
        slot as usize
    }

    fn find(&self, stack: u32) -> Option<usize> {
        let index = stack as usize;
        if index < DENSE_STACKS {
            Some(index)
        } else {
            self.sparse.get(&stack).map(|&slot| slot as usize)
        }
    }

    /// The stack of `slot`; `None` for the "other" slot.
    fn stack(&self, slot: usize) -> Option<u32> {
        if slot < DENSE_STACKS {
            Some(slot as u32)
        } else {
            self.sparse_ids.get(slot - DENSE_STACKS).copied()
        }
    }
}

/// Bytes live per stack at the live-bytes peak, for the call sites and their flame graph.
#[derive(Clone, Debug, Default)]
pub struct StacksAtPeak {
    slots: StackSlots,
    at_peak: Vec<(i64, i64)>,
}

impl StacksAtPeak {
    /// Bytes of `stack` live at the peak.
    pub fn bytes(&self, stack: u32) -> u64 {
        self.slots
            .find(stack)
            .and_then(|slot| self.at_peak.get(slot))
            .map_or(0, |v| v.0.max(0) as u64)
    }

    /// Every stack with bytes live at the peak, and those bytes.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.at_peak
            .iter()
            .enumerate()
            .filter(|(_, v)| v.0 > 0)
            .filter_map(|(slot, v)| Some((self.slots.stack(slot)?, v.0 as u64)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Part {
    pub label: String,
    pub bytes: u64,
    pub blocks: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Peak {
    /// ns since the trace start.
    pub t_ns: u64,
    /// Live bytes at the peak (native, Python data and Go heap).
    pub live_bytes: u64,
    pub live_blocks: u64,
    /// The Go heap's share (heap_live at the last GC plus allocations since).
    pub go_live: u64,
    /// Footprint at the live peak: resident heap when the trace samples resident memory, else
    /// mapped (see `Report::trace.footprint_resident`).
    pub footprint: u64,
    /// Highest footprint and when (it need not coincide with the live peak).
    pub footprint_peak: u64,
    pub footprint_peak_t_ns: u64,
    /// Mapped (virtual) heap footprint at the live peak, and its own highest value and when.
    pub mapped_footprint: u64,
    pub mapped_footprint_peak: u64,
    pub mapped_footprint_peak_t_ns: u64,
    /// Highest resident set size (all traced processes, each at its last sample) and when; 0
    /// without `rss` rows.
    pub resident_peak: u64,
    pub resident_peak_t_ns: u64,
    /// Live native and Python blocks at the peak by log2 size bucket (label: lower bound).
    pub by_size: Vec<Part>,
    pub by_func: Vec<Part>,
    pub by_kind: Vec<Part>,
    pub by_stack: Vec<Part>,
}

pub struct PeakReducer {
    max: u64,
    /// Keyed by `kind × LOG2_BUCKETS + size bucket`: one update serves both breakdowns.
    size_kind: Dimension,
    func: Dimension,
    stack: Dimension,
    stack_slots: StackSlots,
    top: usize,
}

impl PeakReducer {
    pub fn new(top: usize) -> Self {
        PeakReducer {
            max: 0,
            size_kind: Dimension::default(),
            func: Dimension::default(),
            stack: Dimension::default(),
            stack_slots: StackSlots::default(),
            top,
        }
    }

    /// The stack composition at the peak (the call sites report it per site).
    pub fn stacks_at_peak(&self) -> StacksAtPeak {
        StacksAtPeak {
            slots: self.stack_slots.clone(),
            at_peak: self.stack.at_peak.clone(),
        }
    }
}

impl Reducer for PeakReducer {
    type Output = Peak;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        for ev in chunk.evs {
            let block = &ev.block;
            if block.kind != BlockKind::Go {
                // ±1 without a branch: allocs and frees alternate unpredictably.
                let blocks = 1 - 2 * i64::from(ev.kind == EvKind::Free);
                let bytes = blocks * block.size as i64;
                let size_kind = block.kind as usize * LOG2_BUCKETS + log2_bucket(block.size);
                self.size_kind.add(size_kind, bytes, blocks);
                self.func.add(usize::from(block.func), bytes, blocks);
                if block.stack != NO_STACK {
                    let slot = self.stack_slots.slot(block.stack);
                    self.stack.add(slot, bytes, blocks);
                }
            }
            if ev.sets_peak(self.max) {
                self.max = ev.live_bytes;
                self.size_kind.fold();
                self.func.fold();
                self.stack.fold();
            }
        }
    }

    /// Peak numbers come from the replay; the composition from here.
    fn finish(self, end: &End<'_>) -> Peak {
        let peak = end.state.peak();
        let footprint_peak = end.state.peak_footprint();
        let mapped_peak = end.state.peak_mapped_footprint();
        let resident_peak = end.state.peak_resident();
        let top = self.top;
        let parts = |dim: &Dimension, label: &dyn Fn(usize) -> String| -> Vec<Part> {
            dim.rows()
                .into_iter()
                .take(top)
                .map(|(k, bytes, blocks)| Part {
                    label: label(k),
                    bytes,
                    blocks,
                })
                .collect()
        };
        let (mut size, mut kind) = (Dimension::default(), Dimension::default());
        size.at_peak = vec![(0, 0); LOG2_BUCKETS];
        kind.at_peak = vec![(0, 0); KINDS.len()];
        for (key, &(bytes, blocks)) in self.size_kind.at_peak.iter().enumerate() {
            for (dim, k) in [
                (&mut size, key % LOG2_BUCKETS),
                (&mut kind, key / LOG2_BUCKETS),
            ] {
                if let Some(slot) = dim.at_peak.get_mut(k) {
                    slot.0 += bytes;
                    slot.1 += blocks;
                }
            }
        }
        let mut by_size = parts(&size, &|k| log2_bucket_low(k).to_string());
        by_size.sort_by_key(|p| p.label.parse::<u64>().unwrap_or(0));
        Peak {
            t_ns: end.rel(peak.ts_ns),
            live_bytes: peak.live_bytes,
            live_blocks: peak.live_blocks,
            go_live: peak.go_live,
            footprint: peak.footprint,
            footprint_peak: footprint_peak.0,
            footprint_peak_t_ns: end.rel(footprint_peak.1),
            mapped_footprint: peak.mapped_footprint,
            mapped_footprint_peak: mapped_peak.0,
            mapped_footprint_peak_t_ns: end.rel(mapped_peak.1),
            resident_peak: resident_peak.0,
            resident_peak_t_ns: end.rel(resident_peak.1),
            by_size,
            by_func: parts(&self.func, &|k| end.func(k as u16)),
            by_kind: parts(&kind, &|k| {
                KINDS.get(k).map_or("?", |k| k.name()).to_owned()
            }),
            by_stack: parts(&self.stack, &|k| {
                self.stack_slots
                    .stack(k)
                    .map_or_else(|| "other".to_owned(), |s| format!("stack {s}"))
            }),
        }
    }
}
