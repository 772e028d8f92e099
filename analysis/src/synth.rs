//! Synthetic traces for tests, benchmarks and demos: a seeded random program that allocates,
//! reallocates and frees through a simulated allocator (segregated free lists on a brk heap,
//! large blocks in their own mappings), written with the real [`TraceWriter`], so the files
//! are exactly what the tracer writes. Go and Python flavours add their GC rows.
//!
//! The live set is capped (`max_live`), so a longer trace is more of the same steady state:
//! what the benchmark needs to show that analysis memory does not grow with trace length.
//!
//! ```no_run
//! use analysis::synth::{Flavor, Synth};
//! let run = Synth { events: 1_000_000, flavor: Flavor::Native, ..Synth::default() }.write("trace".as_ref()).unwrap();
//! println!("{} rows", run.events_written);
//! ```

use std::path::Path;

use rustc_hash::FxHashMap;

use trace_format::{
    names::{Domain, Event, Runtime},
    run::{Clock, RunInfo, Status, Tool},
    schema,
    write::{GoCycle, Row, TraceWriter, WriteError, WriterOptions},
};

use crate::sizeclass;

/// Which kind of program to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// malloc/free/realloc on a glibc-like heap.
    Native,
    /// runtime.mallocgc rows and GC cycles with stop-the-world pauses; no frees.
    Go,
    /// pymalloc objects in arenas, large requests through malloc, generational GC.
    Python,
}

/// Parameters of a synthetic trace.
#[derive(Clone, Debug)]
pub struct Synth {
    /// Rows to write (approximately: the last step may add a few).
    pub events: u64,
    pub seed: u64,
    pub flavor: Flavor,
    pub pid: u32,
    pub threads: u32,
    /// Most blocks live at once.
    pub max_live: usize,
    /// Distinct stack ids (0: rows carry no stack).
    pub stacks: u32,
    /// CLOCK_MONOTONIC of the first row.
    pub start_ns: u64,
    /// Mean time between rows.
    pub mean_gap_ns: u64,
    /// Written to run.json's workload as `work_units`.
    pub work_units: Option<u64>,
    /// Written to run.json's workload as `label`.
    pub label: Option<String>,
    pub writer: WriterOptions,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            events: 100_000,
            seed: 1,
            flavor: Flavor::Native,
            pid: 4242,
            threads: 4,
            max_live: 50_000,
            stacks: 64,
            start_ns: 1_000_000_000,
            mean_gap_ns: 100,
            work_units: Some(1000),
            label: None,
            writer: WriterOptions::default(),
        }
    }
}

const HEAP_BASE: u64 = 0x5555_5600_0000;
const MMAP_BASE: u64 = 0x7f00_0000_0000;
const BRK_STEP: u64 = 128 * 1024;
const ARENA_BYTES: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// A simulated allocator: exact-size free lists over a bump heap, big blocks mmapped.
struct Heap {
    brk: u64,
    bump: u64,
    free: FxHashMap<u64, Vec<u64>>,
    next_map: u64,
    /// Python: current arena (start, bump) for small objects.
    arena: Option<(u64, u64)>,
}

enum Placement {
    Heap,
    Mapped(u64),
    Arena,
}

impl Heap {
    fn new() -> Heap {
        Heap {
            brk: HEAP_BASE,
            bump: HEAP_BASE + 16,
            free: FxHashMap::default(),
            next_map: MMAP_BASE,
            arena: None,
        }
    }
}

/// The program being imitated, one step at a time.
struct Sim<'a> {
    s: &'a Synth,
    rng: fastrand::Rng,
    w: TraceWriter,
    heap: Heap,
    live: Vec<(u64, u64, Placement)>,
    ts: u64,
    rows: u64,
    allocs_since_gc: u64,
    gc_cycle: u64,
    go_allocated: u64,
    go_heap_live: u64,
    py_gen0: u64,
}

impl Sim<'_> {
    fn push(&mut self, row: Row<'_>) -> Result<(), WriteError> {
        self.rows += 1;
        // Roll segments by size like the recorder does (checked now and then: it is not free).
        if self.rows.is_multiple_of(1 << 16) && self.w.segment_due() {
            self.w.roll()?;
        }
        self.w.push(&Row {
            ts_ns: self.ts,
            pid: self.s.pid,
            ..row
        })
    }

    fn tick(&mut self) {
        let gap = self.rng.u64(0..=self.s.mean_gap_ns * 2);
        self.ts += gap;
        // A little cross-CPU disorder, as real traces have.
        if self.rng.u32(0..1000) == 0 {
            self.ts = self.ts.saturating_sub(self.s.mean_gap_ns / 2 + 1);
        }
    }

    fn tid(&mut self) -> u32 {
        self.s.pid + self.rng.u32(0..self.s.threads.max(1))
    }

    fn stack(&mut self, size: u64) -> Option<u32> {
        (self.s.stacks > 0).then(|| (size.leading_zeros() * 7 + self.rng.u32(0..4)) % self.s.stacks)
    }

    /// Request sizes shaped like real programs: a few struct sizes dominate (skewed towards
    /// the small ones), then short strings, power-of-two buffers, odd medium sizes and a few
    /// large blocks that glibc serves with mmap.
    fn size(&mut self) -> u64 {
        const STRUCTS: [u64; 24] = [
            16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320, 384,
            512, 640, 768, 1024, 2048,
        ];
        match self.rng.u32(0..1000) {
            0..600 => {
                let skewed = self.rng.usize(0..STRUCTS.len()) * self.rng.usize(0..STRUCTS.len())
                    / STRUCTS.len();
                STRUCTS[skewed]
            }
            600..900 => self.rng.u64(1..=128),
            900..990 => 256 << self.rng.u32(0..9),
            990..999 => self.rng.u64(4097..=65536),
            _ => self.rng.u64(200_000..=2_000_000),
        }
    }

    /// Places a block of `size` bytes, writing the brk/mmap rows the allocator would cause.
    fn place(&mut self, size: u64, python_small: bool) -> Result<(u64, Placement), WriteError> {
        if python_small {
            let class = sizeclass::estimate(sizeclass::Allocator::Pymalloc, size).class_bytes;
            if let Some(addr) = self.heap.free.get_mut(&(class | 1)).and_then(Vec::pop) {
                return Ok((addr, Placement::Arena));
            }
            let (start, bump) = match self.heap.arena {
                Some((start, bump)) if bump + class <= start + ARENA_BYTES => (start, bump),
                _ => {
                    let start = self.heap.next_map;
                    self.heap.next_map += ARENA_BYTES;
                    self.push(Row {
                        event: Event::Mmap,
                        func: "mmap",
                        addr: start,
                        size: ARENA_BYTES,
                        prot: Some(3),
                        map_flags: Some(0x22),
                        fd: Some(-1),
                        ..Row::default()
                    })?;
                    self.push(Row {
                        event: Event::Alloc,
                        func: "_PyObject_ArenaMmap",
                        addr: start,
                        size: ARENA_BYTES,
                        runtime: Runtime::Python,
                        domain: Some(Domain::Arena),
                        ..Row::default()
                    })?;
                    (start, start + 48)
                }
            };
            self.heap.arena = Some((start, bump + class));
            return Ok((bump, Placement::Arena));
        }
        let chunk = sizeclass::glibc_chunk(size);
        if chunk >= sizeclass::GLIBC_MMAP_THRESHOLD {
            let len = (chunk + 8).div_ceil(PAGE) * PAGE;
            let start = self.heap.next_map;
            self.heap.next_map += len + PAGE;
            self.push(Row {
                event: Event::Mmap,
                func: "mmap",
                addr: start,
                size: len,
                prot: Some(3),
                map_flags: Some(0x22),
                fd: Some(-1),
                ..Row::default()
            })?;
            return Ok((start + 16, Placement::Mapped(len)));
        }
        if let Some(addr) = self.heap.free.get_mut(&chunk).and_then(Vec::pop) {
            return Ok((addr, Placement::Heap));
        }
        let addr = self.heap.bump;
        self.heap.bump += chunk;
        if self.heap.bump > self.heap.brk {
            self.heap.brk = self.heap.bump.div_ceil(BRK_STEP) * BRK_STEP;
            self.push(Row {
                event: Event::Brk,
                func: "brk",
                addr: self.heap.brk,
                old_addr: Some(self.heap.brk),
                ..Row::default()
            })?;
        }
        Ok((addr, Placement::Heap))
    }

    fn release(&mut self, addr: u64, size: u64, placement: &Placement) -> Result<(), WriteError> {
        match placement {
            Placement::Heap => self
                .heap
                .free
                .entry(sizeclass::glibc_chunk(size))
                .or_default()
                .push(addr),
            Placement::Arena => {
                let class = sizeclass::estimate(sizeclass::Allocator::Pymalloc, size).class_bytes;
                self.heap.free.entry(class | 1).or_default().push(addr);
            }
            Placement::Mapped(len) => self.push(Row {
                event: Event::Munmap,
                func: "munmap",
                addr: addr - 16,
                size: *len,
                ..Row::default()
            })?,
        }
        Ok(())
    }

    fn alloc(&mut self) -> Result<(), WriteError> {
        let size = self.size();
        let tid = self.tid();
        let stack_id = self.stack(size);
        match self.s.flavor {
            Flavor::Go => {
                let addr = 0x00c0_0000_0000 + self.go_allocated;
                self.go_allocated += sizeclass::estimate(sizeclass::Allocator::Go, size)
                    .class_bytes
                    .max(8);
                self.go_heap_live += size;
                self.push(Row {
                    tid,
                    event: Event::Alloc,
                    func: "runtime.mallocgc",
                    addr,
                    size,
                    runtime: Runtime::Go,
                    stack_id,
                    ..Row::default()
                })?;
                self.allocs_since_gc += 1;
                if self.allocs_since_gc >= 5000 {
                    self.go_gc(tid)?;
                }
            }
            Flavor::Python => {
                let small = size <= sizeclass::PYMALLOC_MAX;
                let (addr, placement) = self.place(size, small)?;
                self.tick();
                let domain = if small { Domain::Obj } else { Domain::Mem };
                self.push(Row {
                    tid,
                    event: Event::Alloc,
                    func: "_PyObject_Malloc",
                    addr,
                    size,
                    runtime: Runtime::Python,
                    domain: Some(domain),
                    stack_id,
                    ..Row::default()
                })?;
                self.live.push((addr, size, placement));
                self.py_gen0 += 1;
                if self.py_gen0.is_multiple_of(700) {
                    self.python_gc(tid)?;
                }
            }
            Flavor::Native => {
                let (addr, placement) = self.place(size, false)?;
                self.tick();
                let func = if self.rng.bool() {
                    "malloc"
                } else {
                    "operator new(unsigned long)"
                };
                self.push(Row {
                    tid,
                    event: Event::Alloc,
                    func,
                    addr,
                    size,
                    stack_id,
                    ..Row::default()
                })?;
                self.live.push((addr, size, placement));
            }
        }
        Ok(())
    }

    fn free(&mut self, index: usize) -> Result<(), WriteError> {
        let (addr, size, placement) = self.live.swap_remove(index);
        let tid = self.tid();
        let (func, rt, domain) = match (self.s.flavor, &placement) {
            (Flavor::Python, Placement::Arena) => {
                ("_PyObject_Free", Runtime::Python, Some(Domain::Obj))
            }
            (Flavor::Python, _) => ("_PyObject_Free", Runtime::Python, Some(Domain::Mem)),
            _ => ("free", Runtime::Native, None),
        };
        self.push(Row {
            tid,
            event: Event::Free,
            func,
            addr,
            runtime: rt,
            domain,
            ..Row::default()
        })?;
        self.release(addr, size, &placement)
    }

    fn realloc(&mut self, index: usize) -> Result<(), WriteError> {
        let (old_addr, old_size, placement) = self.live.swap_remove(index);
        self.release(old_addr, old_size, &placement)?;
        let size = (old_size + old_size / 2 + 16).min(1 << 22);
        let (addr, placement) = self.place(size, false)?;
        // In place when the allocator hands back the same chunk.
        let tid = self.tid();
        let stack_id = self.stack(size);
        self.push(Row {
            tid,
            event: Event::Realloc,
            func: "realloc",
            addr,
            size,
            old_addr: Some(old_addr),
            stack_id,
            ..Row::default()
        })?;
        self.live.push((addr, size, placement));
        Ok(())
    }

    fn go_gc(&mut self, tid: u32) -> Result<(), WriteError> {
        self.gc_cycle += 1;
        self.allocs_since_gc = 0;
        let cycle = Some(self.gc_cycle);
        self.push(Row {
            tid,
            event: Event::GcStart,
            func: "runtime.gcStart",
            runtime: Runtime::Go,
            gc_cycle: cycle,
            ..Row::default()
        })?;
        self.go_stw(tid, "GC sweep termination", 20_000)?;
        self.ts += 300_000;
        self.go_stw(tid, "GC mark termination", 40_000)?;
        // About a third survives each cycle.
        let before = self.go_heap_live;
        self.go_heap_live /= 3;
        let goal = self.go_heap_live * 2 + (4 << 20);
        // The runtime's own accounting: spans a quarter emptier than the live bytes (before the
        // sweep), the last peak kept as free spans with half of them returned to the OS, and a
        // GC taking about a tenth of two CPUs since the start.
        let inuse = self.go_heap_live + self.go_heap_live / 4 + (256 << 10);
        let idle = before.saturating_sub(inuse).max(1 << 20);
        let elapsed = self.ts.saturating_sub(self.s.start_ns);
        self.push(Row {
            tid,
            event: Event::GcEnd,
            func: "runtime.gcMarkDone",
            runtime: Runtime::Go,
            gc_cycle: cycle,
            heap_live: Some(self.go_heap_live),
            heap_goal: Some(goal),
            go_cycle: GoCycle {
                heap_inuse: Some(inuse),
                heap_idle: Some(idle),
                heap_released: Some(idle / 2),
                stack_inuse: Some(64 << 10),
                gc_cpu_ns: Some(elapsed * 2 / 10),
                cpu_capacity_ns: Some(elapsed * 2),
                gomaxprocs: Some(2),
            },
            ..Row::default()
        })
    }

    /// A stop-the-world pause of `duration` ns for `reason`.
    fn go_stw(&mut self, tid: u32, reason: &str, duration: u64) -> Result<(), WriteError> {
        self.push(Row {
            tid,
            event: Event::StwStart,
            func: "runtime.stopTheWorldWithSema",
            runtime: Runtime::Go,
            reason: Some(reason),
            ..Row::default()
        })?;
        self.ts += duration;
        self.push(Row {
            tid,
            event: Event::StwEnd,
            func: "runtime.startTheWorldWithSema",
            runtime: Runtime::Go,
            ..Row::default()
        })
    }

    fn python_gc(&mut self, tid: u32) -> Result<(), WriteError> {
        let generation = if self.py_gen0.is_multiple_of(70_000) {
            2
        } else if self.py_gen0.is_multiple_of(7000) {
            1
        } else {
            0
        };
        self.push(Row {
            tid,
            event: Event::GcStart,
            func: "gc_collect_main",
            runtime: Runtime::Python,
            gc_generation: Some(generation),
            ..Row::default()
        })?;
        self.ts += 50_000 * (u64::from(generation) * 10 + 1);
        let collected = self.rng.u64(0..50);
        self.push(Row {
            tid,
            event: Event::GcEnd,
            func: "gc_collect_main",
            runtime: Runtime::Python,
            gc_generation: Some(generation),
            collected: Some(collected),
            uncollectable: Some(0),
            ..Row::default()
        })
    }

    fn step(&mut self) -> Result<(), WriteError> {
        self.tick();
        if self.s.flavor == Flavor::Go {
            return self.alloc();
        }
        let live = self.live.len();
        let roll = self.rng.u32(0..100);
        if live == 0 || (live < self.s.max_live && roll < 52) {
            self.alloc()
        } else if roll < 55 && self.s.flavor == Flavor::Native {
            let index = self.rng.usize(0..live);
            self.realloc(index)
        } else if roll < 85 {
            // Temporaries: free what was just allocated.
            self.free(live - 1)
        } else {
            let index = self.rng.usize(0..live);
            self.free(index)
        }
    }
}

impl Synth {
    /// Writes the trace (`run.json` and `events/`) into `dir` and returns its run.json.
    pub fn write(&self, dir: &Path) -> Result<RunInfo, WriteError> {
        let w = TraceWriter::create(dir, self.writer.clone(), Vec::new())?;
        let mut sim = Sim {
            s: self,
            rng: fastrand::Rng::with_seed(self.seed),
            w,
            heap: Heap::new(),
            live: Vec::new(),
            ts: self.start_ns,
            rows: 0,
            allocs_since_gc: 0,
            gc_cycle: 0,
            go_allocated: 0,
            go_heap_live: 0,
            py_gen0: 0,
        };
        sim.push(Row {
            event: Event::Brk,
            func: "brk",
            addr: HEAP_BASE,
            old_addr: Some(0),
            ..Row::default()
        })?;
        while sim.rows < self.events {
            sim.step()?;
        }
        let end_ns = sim.ts;
        let rows = sim.rows;
        let segments = sim.w.finish()?;
        let (name, runtime_name) = match self.flavor {
            Flavor::Native => ("synthetic-native", Runtime::Native),
            Flavor::Go => ("synthetic-go", Runtime::Go),
            Flavor::Python => ("synthetic-python", Runtime::Python),
        };
        let mut workload = serde_json::Map::new();
        if let Some(units) = self.work_units {
            workload.insert("work_units".into(), units.into());
        }
        if let Some(label) = &self.label {
            workload.insert("label".into(), label.clone().into());
        }
        let run = RunInfo {
            schema_version: schema::SCHEMA_VERSION,
            tool: Tool {
                name: "alloctrace-synth".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            mode: "spawn".into(),
            command: vec![
                format!("/usr/bin/{name}"),
                "--seed".into(),
                self.seed.to_string(),
            ],
            pids: vec![self.pid],
            exe: format!("/usr/bin/{name}"),
            arch: "x86_64".into(),
            clock: Clock {
                monotonic_start_ns: self.start_ns,
                realtime_start_ns: 1_700_000_000_000_000_000,
                monotonic_end_ns: end_ns,
            },
            status: Status::Complete,
            events_written: rows,
            segments,
            start_brk: HEAP_BASE,
            runtimes: [(
                runtime_name.as_str().to_owned(),
                serde_json::json!({"synthetic": true}),
            )]
            .into_iter()
            .collect(),
            workload: (!workload.is_empty()).then_some(serde_json::Value::Object(workload)),
            ..RunInfo::default()
        };
        run.write(dir).map_err(|source| WriteError::Create {
            path: dir.join(schema::RUN_JSON),
            source,
        })?;
        Ok(run)
    }
}
