//! Address-space occupancy: the free gaps between live blocks inside each heap region (the brk
//! heap and anonymous writable mappings), sampled over time. Definitions in `docs/metrics.md`.
//!
//! A sample sorts every live block by address, so it costs O(live blocks). Samples are taken at
//! bucket ends, at most `samples` times, and only once at least `4 × live blocks` events went by
//! since the previous one: the scan never costs more than a small constant per event.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! if let Some(last) = report.occupancy.last {
//!     println!("external fragmentation {:.2}, largest gap {} B", last.frag_index, last.largest_gap);
//! }
//! ```

use serde::Serialize;

use super::{Axis, Chunk, End, HeapState, Reducer};
pub use crate::replay::Region;

/// Gaps shorter than this cannot hold the smallest glibc chunk (MINSIZE, 32 bytes): they are
/// chunk headers and alignment, counted as overhead rather than free space.
pub const MIN_GAP: u64 = 32;
/// Page size for the empty-page count.
pub const PAGE: u64 = 4096;
/// Events per live block that must pass between two samples.
const EVENTS_PER_BLOCK: u64 = 4;

/// Occupancy at one instant, summed over processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sample {
    /// End of the bucket the sample was taken at (ns since the trace start).
    pub t_ns: u64,
    /// Heap regions scanned (the brk heap, and anonymous writable mappings holding a live block).
    pub regions: u64,
    pub region_bytes: u64,
    /// Bytes covered by live blocks' extents (usable sizes) inside the regions.
    pub used_bytes: u64,
    /// Sum of the gaps of at least `MIN_GAP` bytes.
    pub free_bytes: u64,
    pub gaps: u64,
    pub largest_gap: u64,
    /// 1 − largest gap / free bytes (0 when there is no free byte).
    pub frag_index: f64,
    /// 4 KiB pages inside regions that hold no live byte.
    pub empty_pages: u64,
    /// Gaps shorter than `MIN_GAP` (headers, alignment).
    pub overhead_bytes: u64,
    /// Live bytes in no known heap region (mapped before the trace started, or lost rows).
    pub outside_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Occupancy {
    pub samples: Vec<Sample>,
    /// The sample at the end of the trace.
    pub last: Option<Sample>,
    /// The sample with the most free bytes in gaps.
    pub worst: Option<Sample>,
}

pub struct OccupancyReducer {
    axis: Axis,
    stride: usize,
    max_samples: usize,
    events_since: u64,
    out: Occupancy,
    blocks: Vec<(u64, u64)>,
    regions: Vec<Region>,
}

impl OccupancyReducer {
    pub fn new(axis: Axis, max_samples: usize) -> Self {
        let max_samples = max_samples.max(1);
        OccupancyReducer {
            axis,
            stride: axis.count.div_ceil(max_samples).max(1),
            max_samples,
            events_since: 0,
            out: Occupancy::default(),
            blocks: Vec::new(),
            regions: Vec::new(),
        }
    }

    fn sample(&mut self, t_ns: u64, state: HeapState<'_>) -> Sample {
        let mut total = Sample {
            t_ns,
            ..Sample::default()
        };
        for proc in state.processes() {
            self.blocks.clear();
            self.blocks.extend(
                proc.live_blocks()
                    .map(|(addr, b)| (addr, addr.saturating_add(b.kind.extent(b.size)))),
            );
            radsort::sort_by_key(&mut self.blocks, |&(start, _)| start);
            proc.heap_regions(&mut self.regions);
            scan(&self.blocks, &self.regions, &mut total);
        }
        total.frag_index = if total.free_bytes > 0 {
            1.0 - total.largest_gap as f64 / total.free_bytes as f64
        } else {
            0.0
        };
        total
    }

    fn keep(&mut self, sample: Sample) {
        if self
            .out
            .worst
            .is_none_or(|w| sample.free_bytes > w.free_bytes)
        {
            self.out.worst = Some(sample);
        }
        self.out.samples.push(sample);
    }
}

/// Adds the occupancy of one process (`blocks` and `regions` sorted by address) to `total`.
pub fn scan(blocks: &[(u64, u64)], regions: &[Region], total: &mut Sample) {
    let mut next = 0;
    for region in regions {
        let (region_start, region_end) = (region.start, region.end);
        while next < blocks.len() && blocks[next].0 < region_start {
            total.outside_bytes += blocks[next].1 - blocks[next].0;
            next += 1;
        }
        let inside_start = next;
        while next < blocks.len() && blocks[next].0 < region_end {
            next += 1;
        }
        let inside = &blocks[inside_start..next];
        // Anonymous mappings with no live block are not tied to the allocator (thread caches,
        // JIT, buffers): they count in the footprint but not here. The brk heap always counts.
        if inside.is_empty() && !region.brk {
            continue;
        }
        total.regions += 1;
        total.region_bytes += region_end - region_start;
        let mut cursor = region_start;
        for &(start, end) in inside {
            if start > cursor {
                gap(total, cursor, start);
            }
            let end = end.min(region_end);
            if end > cursor {
                total.used_bytes += end - cursor.max(start);
                cursor = end;
            }
        }
        if region_end > cursor {
            gap(total, cursor, region_end);
        }
    }
    for &(start, end) in &blocks[next..] {
        total.outside_bytes += end - start;
    }
}

fn gap(total: &mut Sample, start: u64, end: u64) {
    let len = end - start;
    if len < MIN_GAP {
        total.overhead_bytes += len;
        return;
    }
    total.free_bytes += len;
    total.gaps += 1;
    total.largest_gap = total.largest_gap.max(len);
    let first_page = start.div_ceil(PAGE);
    let last_page = end / PAGE;
    total.empty_pages += last_page.saturating_sub(first_page);
}

impl Reducer for OccupancyReducer {
    type Output = Occupancy;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        self.events_since += chunk.evs.len() as u64;
    }

    fn bucket_end(&mut self, b: usize, state: HeapState<'_>) {
        let last_bucket = b + 1 == self.axis.count;
        if last_bucket
            || self.out.samples.len() + 1 >= self.max_samples
            || !(b + 1).is_multiple_of(self.stride)
        {
            return;
        }
        if self.events_since < EVENTS_PER_BLOCK * state.totals().live_blocks {
            return;
        }
        self.events_since = 0;
        let sample = self.sample(self.axis.offset_ns(b + 1), state);
        self.keep(sample);
    }

    fn finish(mut self, end: &End<'_>) -> Occupancy {
        let t_end = self.axis.offset_ns(self.axis.count);
        let sample = self.sample(t_end, end.state);
        self.keep(sample);
        self.out.last = Some(sample);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check gap accounting on a hand-made layout: two regions, small and large gaps, a block
    /// outside every region, and an empty non-brk region that must be skipped.
    #[test]
    fn scan_counts_gaps_pages_and_outside() {
        let region = |start, end| Region {
            start,
            end,
            brk: false,
        };
        let regions = [
            Region {
                start: 0x10000,
                end: 0x20000,
                brk: true,
            },
            region(0x7f00_0000_0000, 0x7f00_0000_4000),
            region(0x7f00_0001_0000, 0x7f00_0002_0000),
        ];
        let blocks = [
            (0x8000, 0x8010),                     // outside
            (0x10010, 0x10100),                   // 16-byte overhead gap before
            (0x10100, 0x10200),                   // adjacent
            (0x13000, 0x13100),                   // gap of 0x2e00
            (0x7f00_0000_0000, 0x7f00_0000_4000), // fills the second region
        ];
        let mut s = Sample::default();
        scan(&blocks, &regions, &mut s);
        assert_eq!(s.regions, 2);
        assert_eq!(s.region_bytes, 0x10000 + 0x4000);
        assert_eq!(s.outside_bytes, 0x10);
        assert_eq!(s.overhead_bytes, 0x10);
        assert_eq!(s.gaps, 2);
        assert_eq!(s.free_bytes, 0x2e00 + (0x20000 - 0x13100));
        assert_eq!(s.largest_gap, 0x20000 - 0x13100);
        // Pages 0x11..0x13 in the first gap, 0x14..0x20 in the second.
        assert_eq!(s.empty_pages, 2 + 12);
        assert_eq!(s.used_bytes, 0x1f0 + 0x100 + 0x4000);
    }
}
