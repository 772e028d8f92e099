//! The timeline: per time bucket, allocation and free counts and bytes, live bytes and blocks,
//! heap footprint (resident when the trace samples it, and mapped), resident set, pymalloc arenas, the Go heap,
//! madvise releases and time spent in GC and stop-the-world pauses.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! let t = &report.timeline;
//! println!("{} buckets of {} ns", t.live_bytes.len(), t.axis.map_or(0, |a| a.width_ns));
//! ```

use serde::Serialize;

use super::{Axis, Chunk, End, Ev, HeapState, Mark, Reducer, Via};

/// Series over the time buckets of `axis`. Level series (live, footprint, ...) hold the value
/// at the end of the bucket; flow series (counts, bytes, ns) the amount within it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub axis: Option<Axis>,
    pub alloc_count: Vec<u64>,
    pub alloc_bytes: Vec<u64>,
    pub free_count: Vec<u64>,
    pub free_bytes: Vec<u64>,
    /// Live bytes (native, Python data and Go heap) at the end of the bucket.
    pub live_bytes: Vec<u64>,
    /// Highest live bytes within the bucket.
    pub live_bytes_max: Vec<u64>,
    pub live_blocks: Vec<u64>,
    /// Heap footprint: resident bytes of the brk heap and anonymous writable mappings when the
    /// trace samples resident memory (`footprint_resident` of the report), else
    /// `mapped_footprint`.
    pub footprint: Vec<u64>,
    /// brk heap + anonymous writable mappings, mapped (virtual) bytes from the mmap/brk rows.
    pub mapped_footprint: Vec<u64>,
    /// Resident set size of the traced processes (0 without `rss` rows).
    pub resident: Vec<u64>,
    pub arena_bytes: Vec<u64>,
    pub go_live: Vec<u64>,
    pub go_heap_goal: Vec<u64>,
    /// Bytes passed to madvise(DONTNEED/FREE) in the bucket.
    pub released_bytes: Vec<u64>,
    pub gc_count: Vec<u64>,
    pub gc_ns: Vec<u64>,
    pub stw_ns: Vec<u64>,
}

pub struct TimelineReducer {
    axis: Axis,
    out: Timeline,
    released: u64,
    live_at_start: u64,
}

impl TimelineReducer {
    pub fn new(axis: Axis) -> Self {
        let zeros = vec![0; axis.count];
        let out = Timeline {
            axis: Some(axis),
            alloc_count: zeros.clone(),
            alloc_bytes: zeros.clone(),
            free_count: zeros.clone(),
            free_bytes: zeros.clone(),
            live_bytes: zeros.clone(),
            live_bytes_max: zeros.clone(),
            live_blocks: zeros.clone(),
            footprint: zeros.clone(),
            mapped_footprint: zeros.clone(),
            resident: zeros.clone(),
            arena_bytes: zeros.clone(),
            go_live: zeros.clone(),
            go_heap_goal: zeros.clone(),
            released_bytes: zeros.clone(),
            gc_count: zeros.clone(),
            gc_ns: zeros.clone(),
            stw_ns: zeros,
        };
        TimelineReducer {
            axis,
            out,
            released: 0,
            live_at_start: 0,
        }
    }

    /// Spreads `[start, end)` over the buckets it covers.
    fn spread(axis: &Axis, series: &mut [u64], start: u64, end: u64) {
        let (first, last) = (axis.bucket(start), axis.bucket(end));
        for (b, slot) in series.iter_mut().enumerate().take(last + 1).skip(first) {
            let lo = start.max(axis.start_ns + axis.offset_ns(b));
            let hi = end.min(axis.end_ns(b));
            *slot = slot.saturating_add(hi.saturating_sub(lo));
        }
    }
}

impl Reducer for TimelineReducer {
    type Output = Timeline;

    #[inline(always)]
    fn alloc(&mut self, b: usize, ev: &Ev) {
        if ev.via != Via::Relabel {
            let out = &mut self.out;
            out.alloc_count[b] += 1;
            out.alloc_bytes[b] = out.alloc_bytes[b].saturating_add(ev.block.size);
        }
    }

    #[inline(always)]
    fn free(&mut self, b: usize, ev: &Ev) {
        if ev.via != Via::Relabel {
            let out = &mut self.out;
            out.free_count[b] += 1;
            out.free_bytes[b] = out.free_bytes[b].saturating_add(ev.block.size);
        }
    }

    fn observe(&mut self, chunk: &Chunk<'_>) {
        let b = chunk.bucket;
        let out = &mut self.out;
        out.live_bytes_max[b] = chunk
            .evs
            .iter()
            .map(|e| e.live_bytes)
            .fold(out.live_bytes_max[b], u64::max);
        for mark in chunk.marks {
            match mark {
                Mark::Gc(gc) => {
                    out.gc_count[self.axis.bucket(gc.end_ns)] += 1;
                    Self::spread(&self.axis, &mut out.gc_ns, gc.start_ns, gc.end_ns);
                }
                Mark::Stw(stw) => {
                    Self::spread(&self.axis, &mut out.stw_ns, stw.start_ns, stw.end_ns)
                }
            }
        }
    }

    fn bucket_end(&mut self, b: usize, state: HeapState<'_>) {
        let totals = state.totals();
        let out = &mut self.out;
        out.live_bytes[b] = totals.live();
        out.live_bytes_max[b] = out.live_bytes_max[b]
            .max(self.live_at_start)
            .max(totals.live());
        out.live_blocks[b] = totals.live_blocks;
        out.footprint[b] = totals.footprint();
        out.mapped_footprint[b] = totals.mapped_footprint();
        out.resident[b] = totals.resident;
        out.arena_bytes[b] = totals.arena_bytes;
        out.go_live[b] = totals.go_live;
        out.go_heap_goal[b] = totals.go_heap_goal;
        out.released_bytes[b] = totals.released - self.released;
        self.released = totals.released;
        self.live_at_start = totals.live();
    }

    fn finish(self, _end: &End<'_>) -> Timeline {
        self.out
    }
}
