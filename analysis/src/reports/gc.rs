//! Garbage collection: Go and Python GC cycles and Go stop-the-world pauses: counts, durations,
//! Python's collected/uncollectable objects, and the longest cycles and pauses for the timeline
//! overlay.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! for rt in &report.gc.runtimes {
//!     println!("{:?}: {} cycles, {} ns", rt.runtime, rt.cycles, rt.total_ns);
//! }
//! ```

use std::cmp::Reverse;

use serde::Serialize;

use super::{Chunk, End, Mark, Reducer};
use crate::{
    load::Runtime,
    replay::{GoCpu, GoHeap},
    util::{Log2Hist, TopK},
};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Generation {
    pub generation: u32,
    pub cycles: u64,
    pub total_ns: u64,
    pub collected: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeGc {
    pub runtime: Runtime,
    pub cycles: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Log2 buckets of cycle durations in ns.
    pub duration_ns: Log2Hist,
    /// Python: objects collected and found uncollectable.
    pub collected: u64,
    pub uncollectable: u64,
    pub generations: Vec<Generation>,
    /// Go: heap_live and heap_goal reported by the last cycle.
    pub last_heap_live: Option<u64>,
    pub last_heap_goal: Option<u64>,
    /// Go: the runtime's span accounting at the last cycle's end.
    pub last_heap: Option<GoHeap>,
    /// Go: the runtime's span accounting and heap live at each cycle's end, in time order (at
    /// most [`MAX_HEAP_POINTS`]: every other point is dropped when full).
    pub heap_series: Vec<HeapPoint>,
    /// Go: GC CPU time and CPU capacity (elapsed × GOMAXPROCS) as the runtime counts them from
    /// each process's start to its last cycle end, summed over processes: their ratio is
    /// gctrace's `N%`.
    pub gc_cpu_ns: Option<u64>,
    pub cpu_capacity_ns: Option<u64>,
}

/// Go's heap at one cycle end (ns since the trace start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HeapPoint {
    pub t_ns: u64,
    pub pid: u32,
    pub heap_live: Option<u64>,
    pub inuse: u64,
    pub idle: u64,
    pub released: u64,
    pub stacks: u64,
}

/// Points kept of the Go heap series.
pub const MAX_HEAP_POINTS: usize = 4096;

/// Appends to a series capped at [`MAX_HEAP_POINTS`], halving it when full; `stride` says how
/// many cycles each kept point stands for.
fn push_thinned(series: &mut Vec<HeapPoint>, stride: &mut u64, seen: &mut u64, point: HeapPoint) {
    if (*seen).is_multiple_of(*stride) {
        if series.len() == MAX_HEAP_POINTS {
            let kept: Vec<HeapPoint> = series.iter().step_by(2).copied().collect();
            *series = kept;
            *stride *= 2;
        }
        if (*seen).is_multiple_of(*stride) {
            series.push(point);
        }
    }
    *seen += 1;
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub reason: String,
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pauses {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    pub duration_ns: Log2Hist,
    pub reasons: Vec<Reason>,
}

/// An interval for the timeline overlay (ns since the trace start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub start_ns: u64,
    pub end_ns: u64,
    pub pid: u32,
    pub label: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gc {
    pub runtimes: Vec<RuntimeGc>,
    pub pauses: Pauses,
    /// The longest GC cycles and pauses, in time order (bounded for the overlay).
    pub cycles: Vec<Interval>,
    pub stw: Vec<Interval>,
}

type Longest<T> = TopK<(u64, Reverse<u64>, T)>;

pub struct GcReducer {
    runtimes: Vec<RuntimeGc>,
    /// Go: the last CPU accounting of each process.
    go_cpu: Vec<(u32, GoCpu)>,
    /// Go heap series thinning: cycles per kept point, cycles seen.
    heap_stride: u64,
    heap_seen: u64,
    pauses: Pauses,
    reasons: Vec<Reason>,
    reason_ids: Vec<Option<u16>>,
    cycles: Longest<(u32, Runtime, Option<u32>, Option<u64>)>,
    stw: Longest<(u32, Option<u16>)>,
}

impl GcReducer {
    pub fn new(overlay: usize) -> Self {
        GcReducer {
            runtimes: Vec::new(),
            go_cpu: Vec::new(),
            heap_stride: 1,
            heap_seen: 0,
            pauses: Pauses::default(),
            reasons: Vec::new(),
            reason_ids: Vec::new(),
            cycles: TopK::new(overlay),
            stw: TopK::new(overlay),
        }
    }

    fn runtime(&mut self, runtime: Runtime) -> &mut RuntimeGc {
        let index = match self.runtimes.iter().position(|r| r.runtime == runtime) {
            Some(index) => index,
            None => {
                self.runtimes.push(RuntimeGc {
                    runtime,
                    cycles: 0,
                    total_ns: 0,
                    max_ns: 0,
                    duration_ns: Log2Hist::default(),
                    collected: 0,
                    uncollectable: 0,
                    generations: Vec::new(),
                    last_heap_live: None,
                    last_heap_goal: None,
                    last_heap: None,
                    heap_series: Vec::new(),
                    gc_cpu_ns: None,
                    cpu_capacity_ns: None,
                });
                self.runtimes.len() - 1
            }
        };
        &mut self.runtimes[index]
    }
}

impl Reducer for GcReducer {
    type Output = Gc;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        for mark in chunk.marks {
            match *mark {
                Mark::Gc(gc) => {
                    let ns = gc.end_ns - gc.start_ns;
                    let rt = self.runtime(gc.runtime);
                    rt.cycles += 1;
                    rt.total_ns = rt.total_ns.saturating_add(ns);
                    rt.max_ns = rt.max_ns.max(ns);
                    rt.duration_ns.add(ns, ns);
                    rt.collected += gc.collected.unwrap_or(0);
                    rt.uncollectable += gc.uncollectable.unwrap_or(0);
                    rt.last_heap_live = gc.heap_live.or(rt.last_heap_live);
                    rt.last_heap_goal = gc.heap_goal.or(rt.last_heap_goal);
                    if let Some(heap) = gc.go_heap {
                        rt.last_heap = Some(heap);
                        let point = HeapPoint {
                            t_ns: gc.end_ns,
                            pid: gc.pid,
                            heap_live: gc.heap_live,
                            inuse: heap.inuse,
                            idle: heap.idle,
                            released: heap.released,
                            stacks: heap.stacks,
                        };
                        if let Some(rt) = self.runtimes.iter_mut().find(|r| r.runtime == gc.runtime)
                        {
                            push_thinned(
                                &mut rt.heap_series,
                                &mut self.heap_stride,
                                &mut self.heap_seen,
                                point,
                            );
                        }
                    }
                    if let Some(cpu) = gc.go_cpu {
                        match self.go_cpu.iter_mut().find(|(pid, _)| *pid == gc.pid) {
                            Some((_, last)) => *last = cpu,
                            None => self.go_cpu.push((gc.pid, cpu)),
                        }
                    }
                    let rt = self.runtime(gc.runtime);
                    if let Some(generation) = gc.generation {
                        let g = match rt
                            .generations
                            .iter()
                            .position(|g| g.generation == generation)
                        {
                            Some(i) => i,
                            None => {
                                rt.generations.push(Generation {
                                    generation,
                                    ..Generation::default()
                                });
                                rt.generations.len() - 1
                            }
                        };
                        let g = &mut rt.generations[g];
                        g.cycles += 1;
                        g.total_ns = g.total_ns.saturating_add(ns);
                        g.collected += gc.collected.unwrap_or(0);
                    }
                    self.cycles.push((
                        ns,
                        Reverse(gc.start_ns),
                        (gc.pid, gc.runtime, gc.generation, gc.cycle),
                    ));
                }
                Mark::Stw(stw) => {
                    let ns = stw.end_ns - stw.start_ns;
                    let p = &mut self.pauses;
                    p.count += 1;
                    p.total_ns = p.total_ns.saturating_add(ns);
                    p.max_ns = p.max_ns.max(ns);
                    p.duration_ns.add(ns, ns);
                    let r = match self.reason_ids.iter().position(|r| *r == stw.reason) {
                        Some(i) => i,
                        None => {
                            self.reason_ids.push(stw.reason);
                            self.reasons.push(Reason::default());
                            self.reasons.len() - 1
                        }
                    };
                    let reason = &mut self.reasons[r];
                    reason.count += 1;
                    reason.total_ns = reason.total_ns.saturating_add(ns);
                    reason.max_ns = reason.max_ns.max(ns);
                    self.stw
                        .push((ns, Reverse(stw.start_ns), (stw.pid, stw.reason)));
                }
            }
        }
    }

    fn finish(mut self, end: &End<'_>) -> Gc {
        for (reason, id) in self.reasons.iter_mut().zip(&self.reason_ids) {
            reason.reason = id.map_or_else(
                || "unknown".to_owned(),
                |id| end.reasons.name(id).to_owned(),
            );
        }
        self.reasons.sort_by(|a, b| {
            b.total_ns
                .cmp(&a.total_ns)
                .then_with(|| a.reason.cmp(&b.reason))
        });
        self.pauses.reasons = self.reasons;
        self.runtimes.sort_by_key(|r| r.runtime);
        for rt in &mut self.runtimes {
            rt.generations.sort_by_key(|g| g.generation);
            for point in &mut rt.heap_series {
                point.t_ns = end.rel(point.t_ns);
            }
            if rt.runtime == Runtime::Go && !self.go_cpu.is_empty() {
                rt.gc_cpu_ns = Some(self.go_cpu.iter().map(|(_, c)| c.gc_ns).sum());
                rt.cpu_capacity_ns = Some(self.go_cpu.iter().map(|(_, c)| c.capacity_ns).sum());
            }
        }
        let mut cycles: Vec<Interval> = self
            .cycles
            .into_sorted()
            .into_iter()
            .map(|(ns, Reverse(start), (pid, runtime, generation, cycle))| {
                let label = match (generation, cycle) {
                    (Some(g), _) => format!("{} gen{g}", runtime.as_str()),
                    (None, Some(c)) => format!("{} gc #{c}", runtime.as_str()),
                    _ => format!("{} gc", runtime.as_str()),
                };
                Interval {
                    start_ns: end.rel(start),
                    end_ns: end.rel(start + ns),
                    pid,
                    label,
                }
            })
            .collect();
        cycles.sort_by_key(|i| i.start_ns);
        let mut stw: Vec<Interval> = self
            .stw
            .into_sorted()
            .into_iter()
            .map(|(ns, Reverse(start), (pid, reason))| Interval {
                start_ns: end.rel(start),
                end_ns: end.rel(start + ns),
                pid,
                label: reason.map_or_else(|| "stw".to_owned(), |r| end.reasons.name(r).to_owned()),
            })
            .collect();
        stw.sort_by_key(|i| i.start_ns);
        Gc {
            runtimes: self.runtimes,
            pauses: self.pauses,
            cycles,
            stw,
        }
    }
}
