//! The reports: each file reduces the resolved event stream into one section of the report,
//! with no I/O. [`crate::report::build`] replays the trace and feeds every reducer the same
//! events (see [`Reducer`] for the order), so the trace is read once.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! println!("{} gaps at the end", report.occupancy.last.map_or(0, |s| s.gaps));
//! ```

pub mod callsites;
pub mod gc;
pub mod internal;
pub mod leaks;
pub mod lifetimes;
pub mod occupancy;
pub mod peak;
pub mod reallocs;
pub mod sizes;
pub mod threads;
pub mod timeline;

use serde::Serialize;

use crate::util::Interner;

pub use crate::replay::{Block, BlockKind, Ev, EvKind, GcSpan, HeapState, Mark, StwSpan, Via};

/// Events of one time bucket, in causal order.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub bucket: usize,
    pub evs: &'a [Ev],
    pub marks: &'a [Mark],
    /// Indices of the `Alloc` events made by a realloc (each right after the `Free` of the
    /// block it replaced).
    pub realloc_index: &'a [u32],
}

/// A pure reduction over the event stream.
///
/// For each chunk, [`crate::report::build`] hands every `Alloc` event to [`Reducer::alloc`],
/// then every `Free` event to [`Reducer::free`] (each kind in order), then the chunk to
/// [`Reducer::observe`] for what needs the events interleaved. The per-event calls of all
/// reducers share one loop, so an event is read once rather than once per reducer.
pub trait Reducer {
    type Output;
    /// Takes the next `Alloc` event, of time bucket `bucket`.
    #[inline(always)]
    fn alloc(&mut self, _bucket: usize, _ev: &Ev) {}
    /// Takes the next `Free` event, of time bucket `bucket`.
    #[inline(always)]
    fn free(&mut self, _bucket: usize, _ev: &Ev) {}
    /// Takes the chunk whose allocs and frees were just handed over (all in `chunk.bucket`).
    fn observe(&mut self, _chunk: &Chunk<'_>) {}
    /// Called once per time bucket, in order, after its last event.
    fn bucket_end(&mut self, _bucket: usize, _state: HeapState<'_>) {}
    /// The section, from what was observed and the state after the last row.
    fn finish(self, end: &End<'_>) -> Self::Output;
}

/// What the reducers may use when they finish.
#[derive(Clone, Copy)]
pub struct End<'a> {
    pub state: HeapState<'a>,
    pub axis: Axis,
    pub funcs: &'a Interner,
    pub reasons: &'a Interner,
    /// Bytes per stack at the live-bytes peak, from the peak reducer (one composition serves
    /// the peak section and the call sites).
    pub peak_stacks: &'a peak::StacksAtPeak,
}

impl End<'_> {
    /// Nanoseconds from the trace start to `ts`.
    pub fn rel(&self, ts: u64) -> u64 {
        ts.saturating_sub(self.axis.start_ns)
    }

    pub fn func(&self, id: u16) -> String {
        self.funcs.name(id).to_owned()
    }
}

/// `stack_id` as an option.
pub fn stack(id: u32) -> Option<u32> {
    (id != crate::replay::NO_STACK).then_some(id)
}

/// The time axis: `count` buckets of `width_ns` from `start_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Axis {
    pub start_ns: u64,
    pub width_ns: u64,
    pub count: usize,
}

impl Axis {
    /// Buckets covering `[start, end]` with at most `max_buckets` buckets.
    pub fn new(start_ns: u64, end_ns: u64, max_buckets: usize) -> Axis {
        let max_buckets = max_buckets.max(1) as u64;
        let span = end_ns.saturating_sub(start_ns).saturating_add(1);
        let width_ns = span.div_ceil(max_buckets).max(1);
        let count = span.div_ceil(width_ns).max(1) as usize;
        Axis {
            start_ns,
            width_ns,
            count,
        }
    }

    /// The bucket of `ts`, clamped to the axis.
    #[inline]
    pub fn bucket(&self, ts: u64) -> usize {
        ((ts.saturating_sub(self.start_ns) / self.width_ns) as usize).min(self.count - 1)
    }

    /// Start of bucket `b`, relative to the axis start.
    pub fn offset_ns(&self, b: usize) -> u64 {
        (b as u64).saturating_mul(self.width_ns)
    }

    /// First timestamp after bucket `b`.
    pub fn end_ns(&self, b: usize) -> u64 {
        self.start_ns
            .saturating_add((b as u64 + 1).saturating_mul(self.width_ns))
    }
}

/// Count and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub count: u64,
    pub bytes: u64,
}

impl Tally {
    #[inline]
    pub fn add(&mut self, bytes: u64) {
        self.add_if(1, bytes);
    }

    /// Adds `bytes` when `counted` is 1, nothing when it is 0, without a branch.
    #[inline]
    pub fn add_if(&mut self, counted: u64, bytes: u64) {
        self.count += counted;
        self.bytes = self.bytes.saturating_add(bytes * counted);
    }
}

impl crate::util::Counted for Tally {
    fn rank(&self) -> u64 {
        self.count
    }
}
