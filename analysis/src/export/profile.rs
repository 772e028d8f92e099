//! Per-stack totals of a trace, computed with the reports' replay ([`crate::replay`]), so that
//! "live" means the same thing in an export as in the report: frees have size 0 and end the
//! block allocated at that address, a realloc ends its input block and starts a new one (a
//! failed realloc keeps the input), nested allocator calls count once for the outer call, and
//! Go objects, freed in bulk by the GC, count as allocated but never as live.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::{
    error::AnalysisError,
    load::Trace,
    pass,
    replay::{Ev, EvKind, NO_STACK, Pending, Replay, Via},
    reports::{Axis, BlockKind},
};

/// The six measures of a stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackValues {
    /// Allocations made (realloc results included) and their requested bytes.
    pub alloc_objects: u64,
    pub alloc_space: u64,
    /// Blocks and bytes still live after the last row.
    pub inuse_objects: u64,
    pub inuse_space: u64,
    /// Blocks and bytes live at the live-bytes peak (the report's peak).
    pub peak_objects: u64,
    pub peak_space: u64,
}

/// The measures of one stack of one process; `stack_id` `None` gathers rows without a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSample {
    pub pid: u32,
    pub stack_id: Option<u32>,
    pub values: StackValues,
}

/// Every stack's measures, sorted by (pid, stack id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackProfile {
    pub samples: Vec<StackSample>,
    /// Wall-clock time of the first row, when run.json has the clock pair.
    pub realtime_start_ns: Option<u64>,
    /// From the first row to the last.
    pub duration_ns: u64,
    /// Total live bytes at the peak (Go heap included) and when, relative to the start.
    pub peak_live_bytes: u64,
    pub peak_t_ns: u64,
    /// The traced executable (run.json `exe`).
    pub exe: String,
}

/// Running sums per (pid, stack) slot.
#[derive(Debug, Default)]
struct Sums {
    slots: FxHashMap<(u32, u32), usize>,
    keys: Vec<(u32, u32)>,
    allocs: Vec<(u64, u64)>,
    /// (bytes, blocks) live now, changed since the last peak, and at the last peak.
    live: Vec<(i64, i64)>,
    since: Vec<(i64, i64)>,
    at_peak: Vec<(i64, i64)>,
    dirty: Vec<bool>,
    touched: Vec<usize>,
    max: u64,
}

impl Sums {
    fn slot(&mut self, pid: u32, stack: u32) -> usize {
        let next = self.keys.len();
        let slot = *self.slots.entry((pid, stack)).or_insert(next);
        if slot == next {
            self.keys.push((pid, stack));
            self.allocs.push((0, 0));
            self.live.push((0, 0));
            self.since.push((0, 0));
            self.at_peak.push((0, 0));
            self.dirty.push(false);
        }
        slot
    }

    fn observe(&mut self, ev: &Ev) {
        let slot = self.slot(ev.pid, ev.block.stack);
        // A relabel moves a block between the layers of one call: not a new allocation.
        if ev.kind == EvKind::Alloc && ev.via != Via::Relabel {
            let a = &mut self.allocs[slot];
            a.0 += 1;
            a.1 = a.1.saturating_add(ev.block.size);
        }
        if ev.block.kind != BlockKind::Go {
            let sign = if ev.kind == EvKind::Free { -1 } else { 1 };
            let (bytes, blocks) = (sign * ev.block.size as i64, sign);
            self.live[slot].0 += bytes;
            self.live[slot].1 += blocks;
            self.since[slot].0 += bytes;
            self.since[slot].1 += blocks;
            if !self.dirty[slot] {
                self.dirty[slot] = true;
                self.touched.push(slot);
            }
        }
        if ev.sets_peak(self.max) {
            self.max = ev.live_bytes;
            for &slot in &self.touched {
                let since = std::mem::take(&mut self.since[slot]);
                self.at_peak[slot].0 += since.0;
                self.at_peak[slot].1 += since.1;
                self.dirty[slot] = false;
            }
            self.touched.clear();
        }
    }
}

impl pass::Consumer for Sums {
    fn chunk(&mut self, _bucket: usize, pending: &Pending) {
        for ev in &pending.evs {
            self.observe(ev);
        }
    }
}

impl StackProfile {
    /// Replays the trace in `dir` once and sums every stack's measures.
    pub fn build(dir: &Path) -> Result<StackProfile, AnalysisError> {
        let trace = Trace::open(dir)?;
        let (start, last_ts) = trace.span()?;
        let mut replay = Replay::new(trace.run.pids.first().copied(), trace.run.start_brk)
            .with_resident_footprint(crate::report::samples_resident(&trace.run));
        let mut sums = Sums::default();
        pass::run(&trace, Axis::new(start, last_ts, 1), &mut replay, &mut sums)?;
        let realtime_start_ns = trace.run.clock.wall_ns(start);
        let mut samples: Vec<StackSample> = sums
            .keys
            .iter()
            .enumerate()
            .map(|(slot, &(pid, stack))| {
                let positive = |v: i64| v.max(0) as u64;
                StackSample {
                    pid,
                    stack_id: (stack != NO_STACK).then_some(stack),
                    values: StackValues {
                        alloc_objects: sums.allocs[slot].0,
                        alloc_space: sums.allocs[slot].1,
                        inuse_objects: positive(sums.live[slot].1),
                        inuse_space: positive(sums.live[slot].0),
                        peak_objects: positive(sums.at_peak[slot].1),
                        peak_space: positive(sums.at_peak[slot].0),
                    },
                }
            })
            .filter(|s| s.values != StackValues::default())
            .collect();
        samples.sort_by_key(|s| (s.pid, s.stack_id));
        let peak = replay.peak();
        Ok(StackProfile {
            samples,
            realtime_start_ns,
            duration_ns: last_ts.saturating_sub(start),
            peak_live_bytes: peak.live_bytes,
            peak_t_ns: peak.ts_ns.saturating_sub(start),
            exe: trace.run.exe.clone(),
        })
    }

    /// Sum of one measure over every stack.
    pub fn total(&self, measure: Measure) -> u64 {
        self.samples.iter().map(|s| measure.of(&s.values)).sum()
    }
}

/// One of the six measures, by its pprof sample-type name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    AllocObjects,
    AllocSpace,
    InuseObjects,
    InuseSpace,
    PeakObjects,
    PeakSpace,
}

impl Measure {
    pub const ALL: [Measure; 6] = [
        Measure::AllocObjects,
        Measure::AllocSpace,
        Measure::InuseObjects,
        Measure::InuseSpace,
        Measure::PeakObjects,
        Measure::PeakSpace,
    ];

    /// The pprof sample type (and command-line) name.
    pub fn name(self) -> &'static str {
        match self {
            Measure::AllocObjects => "alloc_objects",
            Measure::AllocSpace => "alloc_space",
            Measure::InuseObjects => "inuse_objects",
            Measure::InuseSpace => "inuse_space",
            Measure::PeakObjects => "peak_inuse_objects",
            Measure::PeakSpace => "peak_inuse_space",
        }
    }

    /// `count` or `bytes`.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::AllocObjects | Measure::InuseObjects | Measure::PeakObjects => "count",
            _ => "bytes",
        }
    }

    /// A human title, for viewers that show one.
    pub fn title(self) -> &'static str {
        match self {
            Measure::AllocObjects => "allocations",
            Measure::AllocSpace => "bytes allocated",
            Measure::InuseObjects => "blocks live at the end",
            Measure::InuseSpace => "bytes live at the end",
            Measure::PeakObjects => "blocks live at the peak",
            Measure::PeakSpace => "bytes live at the peak",
        }
    }

    pub fn of(self, v: &StackValues) -> u64 {
        match self {
            Measure::AllocObjects => v.alloc_objects,
            Measure::AllocSpace => v.alloc_space,
            Measure::InuseObjects => v.inuse_objects,
            Measure::InuseSpace => v.inuse_space,
            Measure::PeakObjects => v.peak_objects,
            Measure::PeakSpace => v.peak_space,
        }
    }

    /// Parses a name (also `bytes` for alloc_space and `count` for alloc_objects).
    pub fn parse(name: &str) -> Option<Measure> {
        match name {
            "bytes" => Some(Measure::AllocSpace),
            "count" | "counts" => Some(Measure::AllocObjects),
            _ => Measure::ALL.into_iter().find(|m| m.name() == name),
        }
    }
}
