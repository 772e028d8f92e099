//! Replays the rows in causal order into process state (live blocks, mapped regions, brk heap,
//! Go and Python GC state) and turns them into resolved [`Ev`]s and [`Mark`]s that the reports
//! reduce. This is the only place that knows the row semantics of `docs/schema.md`; the reports
//! see blocks with their whole history (origin time, size, realloc chain).
//!
//! Memory grows with the number of live blocks and mapped regions, never with the number of
//! rows: Go allocations (freed in bulk by the GC) are not kept, only counted.
//!
//! ```no_run
//! // Used through analysis::report::build, which drives a Replay over every batch.
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! println!("{} rows replayed", report.counters.rows);
//! ```

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::{
    addrmap::AddrMap,
    load::{Domain, Event, EventBatch, Runtime, opt},
    sizeclass::{self, Allocator},
    space::{self, AddressSpace, Mapping},
};

/// `stack_id` of a row without a stack.
pub const NO_STACK: u32 = u32::MAX;
/// `madvise` advice values that give pages back to the kernel.
const MADV_DONTNEED: u32 = 4;
const MADV_FREE: u32 = 8;
/// Results at or above this are `-errno` values (failed syscalls returning a pointer).
const SYSCALL_ERROR_MIN: u64 = u64::MAX - 4095;
/// No allocation or heap statistic can exceed the 47-bit user address space; larger values come
/// from damaged rows. Bounding them keeps every sum far from overflow.
const MAX_SIZE: u64 = 1 << 47;
/// How far back in the pending events a nested allocation looks for its inner row.
const NESTED_LOOKBACK: usize = 64;
/// How many rows ahead [`Replay::apply_prefetching`] starts loading the live blocks a row will
/// touch: enough rows of work to cover a miss to memory, few enough that the lines are still
/// cached when used.
pub const PREFETCH_ROWS: usize = 4;

/// Which allocator layer a block belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// malloc & co., operator new, Rust's global allocator.
    #[default]
    Native,
    /// Python object domain (PyObject_Malloc).
    PyObj,
    /// Python mem domain (PyMem_Malloc).
    PyMem,
    /// Python raw domain (PyMem_RawMalloc).
    PyRaw,
    /// A pymalloc arena: footprint, never live data.
    PyArena,
    /// Go heap object (runtime.mallocgc), freed in bulk by the GC.
    Go,
}

impl BlockKind {
    fn of(runtime: Runtime, domain: Option<Domain>) -> BlockKind {
        match (runtime, domain) {
            (Runtime::Go, _) => BlockKind::Go,
            (_, Some(Domain::Obj)) => BlockKind::PyObj,
            (_, Some(Domain::Mem)) => BlockKind::PyMem,
            (_, Some(Domain::Raw)) => BlockKind::PyRaw,
            (_, Some(Domain::Arena)) => BlockKind::PyArena,
            _ => BlockKind::Native,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Native => "native",
            BlockKind::PyObj => "python obj",
            BlockKind::PyMem => "python mem",
            BlockKind::PyRaw => "python raw",
            BlockKind::PyArena => "python arena",
            BlockKind::Go => "go",
        }
    }

    /// The allocator whose rounding applies to a `size`-byte request of this kind.
    pub fn allocator(self, size: u64) -> Allocator {
        match self {
            BlockKind::Go => Allocator::Go,
            BlockKind::PyObj | BlockKind::PyMem
                if (1..=sizeclass::PYMALLOC_MAX).contains(&size) =>
            {
                Allocator::Pymalloc
            }
            _ => Allocator::Glibc,
        }
    }

    /// Bytes from `addr` the block is taken to occupy (its usable size, at least one byte).
    pub fn extent(self, size: u64) -> u64 {
        sizeclass::estimate(self.allocator(size), size)
            .usable
            .max(1)
    }
}

/// A live block, with the history of the logical allocation it belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    /// When the logical allocation started (the first alloc of a realloc chain).
    pub ts: u64,
    /// The process's allocation counter at that start.
    pub seq: u64,
    /// Current requested size.
    pub size: u64,
    /// Requested size at the start of the realloc chain.
    pub first_size: u64,
    pub stack: u32,
    /// Thread that made the current block (allocation or last realloc).
    pub tid: u32,
    pub func: u16,
    /// Reallocs that led to this block (saturating).
    pub chain: u16,
    pub kind: BlockKind,
}

impl Block {
    /// The block row `i` of `batch` allocates: `size` bytes at `ts`, the first of its chain.
    #[inline]
    fn new(batch: &EventBatch, i: usize, ts: u64, size: u64) -> Block {
        Block {
            ts,
            seq: 0,
            size,
            first_size: size,
            stack: opt(&batch.stack_id, i).unwrap_or(NO_STACK),
            tid: batch.tid.values()[i],
            func: batch.func(i),
            chain: 0,
            kind: BlockKind::of(batch.runtime(i), batch.domain(i)),
        }
    }
}

/// How a block ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A free (or realloc to size 0).
    Call,
    /// Replaced by realloc: the logical allocation goes on in the next `Alloc`.
    Realloc,
    /// Its address was handed out again without a free in between (a lost free row).
    Implicit,
    /// Not an event of the program: the inner half of a nested pair (malloc under operator
    /// new) was already reduced when the outer half arrived; this Free/Alloc pair moves the
    /// block's attribution to the outer call. Running sums apply it; counts ignore it.
    Relabel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvKind {
    Alloc,
    Free,
}

/// One resolved allocation event.
#[derive(Clone, Copy, Debug)]
pub struct Ev {
    pub kind: EvKind,
    /// For `Free`: how the block ended. For `Alloc`: `Realloc` when made by realloc.
    pub via: Via,
    /// A realloc whose result differs from its input (data copied).
    pub moved: bool,
    pub pid: u32,
    /// Thread of this event (for a `Free`, the freeing thread).
    pub tid: u32,
    pub ts: u64,
    pub addr: u64,
    /// The allocated block, or the block being freed.
    pub block: Block,
    /// For `Free`: allocations the process made after the block's start and before this free.
    pub between: u64,
    /// Live bytes of all processes after this event (tracked blocks plus the Go heap).
    pub live_bytes: u64,
}

impl Ev {
    /// Whether the live-bytes peak is at this event, given the highest live bytes `max` seen
    /// before it: a new maximum, or a relabel at the maximum (it re-attributes the peak's own
    /// blocks, see [`Via::Relabel`]). The one peak rule of the reports and exports.
    #[inline]
    pub fn sets_peak(&self, max: u64) -> bool {
        self.live_bytes > max || (self.via == Via::Relabel && self.live_bytes == max)
    }
}

/// A completed garbage-collection cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GcSpan {
    pub pid: u32,
    pub runtime: Runtime,
    pub start_ns: u64,
    pub end_ns: u64,
    pub cycle: Option<u64>,
    pub generation: Option<u32>,
    pub heap_live: Option<u64>,
    pub heap_goal: Option<u64>,
    pub collected: Option<u64>,
    pub uncollectable: Option<u64>,
    /// Go: the runtime's span accounting at the cycle's end.
    pub go_heap: Option<GoHeap>,
    /// Go: the runtime's cumulative GC CPU time and CPU capacity at the cycle's end.
    pub go_cpu: Option<GoCpu>,
}

/// Go's own account of its heap's spans at a cycle's end (`runtime.MemStats` names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GoHeap {
    /// Bytes in in-use spans (`HeapInuse`).
    pub inuse: u64,
    /// Bytes in free spans, returned to the OS or not (`HeapIdle`).
    pub idle: u64,
    /// Bytes of free spans returned to the OS (`HeapReleased`).
    pub released: u64,
    /// Bytes in stack spans (`StackInuse`).
    pub stacks: u64,
}

/// Go's cumulative CPU accounting at a cycle's end, since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GoCpu {
    /// GC CPU time as gctrace counts it.
    pub gc_ns: u64,
    /// Elapsed time × GOMAXPROCS.
    pub capacity_ns: u64,
    pub gomaxprocs: Option<u32>,
}

/// A completed stop-the-world pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StwSpan {
    pub pid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub reason: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
pub enum Mark {
    Gc(GcSpan),
    Stw(StwSpan),
}

/// Resolved events waiting to be handed to the reports.
#[derive(Debug, Default)]
pub struct Pending {
    pub evs: Vec<Ev>,
    pub marks: Vec<Mark>,
}

impl Pending {
    pub fn clear(&mut self) {
        self.evs.clear();
        self.marks.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.evs.is_empty() && self.marks.is_empty()
    }
}

/// Running totals over every process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requested bytes of live native and Python blocks.
    pub live_bytes: u64,
    pub live_blocks: u64,
    /// Go heap: `heap_live` at the last gc_end plus bytes allocated since.
    pub go_live: u64,
    /// Sum of the last `heap_goal` of each Go process.
    pub go_heap_goal: u64,
    /// Bytes in live pymalloc arenas.
    pub arena_bytes: u64,
    /// Anonymous writable (non-stack) mappings.
    pub mapped_heap: u64,
    /// The brk heap, `[start_brk, break)`.
    pub brk_heap: u64,
    /// Bytes given back with madvise(DONTNEED/FREE), cumulative.
    pub released: u64,
    /// Resident set size: the last `rss` sample of each process, summed.
    pub resident: u64,
    /// Resident heap (brk heap and anonymous writable mappings): the last `rss` sample's
    /// `heap_rss_bytes` of each process, summed.
    pub heap_resident: u64,
    /// Whether the footprint is the resident heap (the trace samples resident memory) rather
    /// than the mapped one.
    pub resident_footprint: bool,
}

impl Totals {
    /// Live bytes including the Go heap.
    pub fn live(&self) -> u64 {
        self.live_bytes.saturating_add(self.go_live)
    }

    /// Heap footprint: the resident heap when the trace samples resident memory, else the
    /// mapped heap ([`Totals::mapped_footprint`]).
    pub fn footprint(&self) -> u64 {
        if self.resident_footprint {
            self.heap_resident
        } else {
            self.mapped_footprint()
        }
    }

    /// Mapped (virtual) heap footprint: brk heap plus anonymous writable mappings, from the
    /// mmap/brk rows, whether their pages were ever touched or not.
    pub fn mapped_footprint(&self) -> u64 {
        self.mapped_heap.saturating_add(self.brk_heap)
    }
}

/// The highest total live bytes, and the state at that instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeakLive {
    pub ts_ns: u64,
    pub live_bytes: u64,
    pub live_blocks: u64,
    pub go_live: u64,
    pub footprint: u64,
    pub mapped_footprint: u64,
}

/// Row-level facts: what was seen, and everything that did not fit the semantics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counters {
    pub rows: u64,
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub go_allocs: u64,
    pub arena_allocs: u64,
    pub arena_frees: u64,
    /// alloc rows returning NULL.
    pub failed_allocs: u64,
    /// realloc rows returning NULL for a non-zero size (the old block stays).
    pub failed_reallocs: u64,
    /// realloc rows whose input block was never seen allocated.
    pub realloc_unknown_input: u64,
    pub free_null: u64,
    /// free rows for an address that is not live (freed twice, or allocated before the trace).
    pub free_unknown: u64,
    /// A wrapper and the allocator it calls both traced (operator new → malloc,
    /// PyObject_Malloc → malloc): the pair is one allocation, attributed to the outer call.
    pub nested_duplicates: u64,
    /// An address handed out again while still live (a free row was lost).
    pub alloc_over_live: u64,
    pub mmaps: u64,
    pub munmaps: u64,
    pub mremaps: u64,
    pub brks: u64,
    pub mprotects: u64,
    pub madvises: u64,
    pub failed_syscalls: u64,
    pub gc_cycles: u64,
    pub stw_pauses: u64,
    /// gc_end/stw_end rows without their start (the start was before the trace).
    pub unmatched_ends: u64,
    /// `rss` rows (resident-memory samples).
    pub rss_samples: u64,
    /// Rows whose `event` this version does not know.
    pub unknown_events: u64,
    /// Rows whose ts_ns is smaller than the previous row's (cross-CPU disorder).
    pub ts_backwards: u64,
    /// Allocation rows with a size no process can have (damaged rows), skipped.
    pub implausible_rows: u64,
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    blocks: AddrMap<Block>,
    /// Allocations so far (alloc rows and moving reallocs).
    seq: u64,
    space: AddressSpace,
    brk_start: Option<u64>,
    brk_end: u64,
    go_live: u64,
    go_goal: u64,
    /// The last `rss` sample: (rss_bytes, heap_rss_bytes).
    resident: (u64, u64),
    gc_start: Option<(u64, Option<u64>, Option<u32>)>,
    stw_start: Option<(u64, Option<u16>)>,
    /// Recent (thread, address) allocations and frees, to recognise nested pairs.
    recent_allocs: Recent,
    recent_frees: Recent,
}

/// The last few (tid, addr) pairs of one kind of row.
#[derive(Debug, Default)]
struct Recent {
    entries: [(u32, u64); 8],
    next: usize,
}

impl Recent {
    #[inline]
    fn push(&mut self, tid: u32, addr: u64) {
        self.entries[self.next] = (tid, addr);
        self.next = (self.next + 1) % self.entries.len();
    }

    #[inline]
    fn contains(&self, tid: u32, addr: u64) -> bool {
        self.entries.contains(&(tid, addr))
    }
}

impl Proc {
    fn new(pid: u32, brk_start: Option<u64>) -> Proc {
        Proc {
            pid,
            blocks: AddrMap::default(),
            seq: 0,
            space: AddressSpace::default(),
            brk_start,
            brk_end: brk_start.unwrap_or(0),
            go_live: 0,
            go_goal: 0,
            resident: (0, 0),
            gc_start: None,
            stw_start: None,
            recent_allocs: Recent::default(),
            recent_frees: Recent::default(),
        }
    }

    fn brk_heap(&self) -> u64 {
        self.brk_start
            .map_or(0, |start| self.brk_end.saturating_sub(start))
    }
}

/// A heap region: `[start, end)`, and whether it is the brk heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub brk: bool,
}

/// A read-only view of one process for the reports.
#[derive(Clone, Copy)]
pub struct ProcView<'a> {
    proc: &'a Proc,
}

impl<'a> ProcView<'a> {
    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    /// Live blocks (native and Python data; arenas excluded) with their addresses.
    pub fn live_blocks(&self) -> impl Iterator<Item = (u64, &'a Block)> + 'a {
        self.proc
            .blocks
            .iter()
            .filter(|(_, b)| b.kind != BlockKind::PyArena)
    }

    /// Heap regions in address order: the brk heap and every anonymous writable mapping.
    pub fn heap_regions(&self, out: &mut Vec<Region>) {
        out.clear();
        let mut ranges = Vec::new();
        self.proc.space.heap_ranges(&mut ranges);
        out.extend(ranges.into_iter().map(|(start, end)| Region {
            start,
            end,
            brk: false,
        }));
        if let Some(start) = self.proc.brk_start
            && self.proc.brk_end > start
        {
            out.push(Region {
                start,
                end: self.proc.brk_end,
                brk: true,
            });
            out.sort_unstable_by_key(|r| r.start);
        }
    }
}

/// The state the reports may look at between chunks.
#[derive(Clone, Copy)]
pub struct HeapState<'a> {
    replay: &'a Replay,
}

impl<'a> HeapState<'a> {
    pub fn totals(&self) -> &'a Totals {
        &self.replay.totals
    }

    pub fn peak(&self) -> PeakLive {
        self.replay.peak
    }

    /// (bytes, ts) of the highest footprint.
    pub fn peak_footprint(&self) -> (u64, u64) {
        self.replay.peak_footprint
    }

    /// (bytes, ts) of the highest mapped footprint.
    pub fn peak_mapped_footprint(&self) -> (u64, u64) {
        self.replay.peak_mapped_footprint
    }

    /// (bytes, ts) of the highest resident set size (all processes).
    pub fn peak_resident(&self) -> (u64, u64) {
        self.replay.peak_resident
    }

    pub fn processes(&self) -> impl Iterator<Item = ProcView<'a>> + 'a {
        self.replay.procs.iter().map(|proc| ProcView { proc })
    }
}

/// The replay state machine.
#[derive(Debug)]
pub struct Replay {
    procs: Vec<Proc>,
    index: FxHashMap<u32, usize>,
    last_pid: Option<(u32, usize)>,
    /// pid whose brk heap starts at run.json's start_brk.
    main_pid: Option<u32>,
    start_brk: u64,
    last_ts: u64,
    totals: Totals,
    peak: PeakLive,
    peak_footprint: (u64, u64),
    peak_mapped_footprint: (u64, u64),
    peak_resident: (u64, u64),
    counters: Counters,
    /// Runtimes seen in allocation and GC rows (indexed by `Runtime as usize`).
    seen: [bool; 3],
}

impl Replay {
    pub fn new(main_pid: Option<u32>, start_brk: u64) -> Replay {
        Replay {
            procs: Vec::new(),
            index: FxHashMap::default(),
            last_pid: None,
            main_pid,
            start_brk,
            last_ts: 0,
            totals: Totals::default(),
            peak: PeakLive::default(),
            peak_footprint: (0, 0),
            peak_mapped_footprint: (0, 0),
            peak_resident: (0, 0),
            counters: Counters::default(),
            seen: [false; 3],
        }
    }

    /// Takes the resident heap as the footprint from the start (the trace's run.json says it
    /// samples resident memory). The first `rss` row does so too.
    pub fn with_resident_footprint(mut self, on: bool) -> Replay {
        self.totals.resident_footprint = on;
        self
    }

    /// Runtimes whose allocation or GC rows appeared.
    pub fn runtimes(&self) -> Vec<Runtime> {
        [Runtime::Native, Runtime::Go, Runtime::Python]
            .into_iter()
            .filter(|r| self.seen[*r as usize])
            .collect()
    }

    pub fn state(&self) -> HeapState<'_> {
        HeapState { replay: self }
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn peak(&self) -> PeakLive {
        self.peak
    }

    /// (bytes, ts) of the highest footprint.
    pub fn peak_footprint(&self) -> (u64, u64) {
        self.peak_footprint
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.pid).collect()
    }

    #[inline]
    fn proc_index(&mut self, pid: u32) -> usize {
        if let Some((last, index)) = self.last_pid
            && last == pid
        {
            return index;
        }
        let index = match self.index.get(&pid) {
            Some(&index) => index,
            None => {
                let brk_start =
                    (Some(pid) == self.main_pid && self.start_brk > 0).then_some(self.start_brk);
                self.procs.push(Proc::new(pid, brk_start));
                self.index.insert(pid, self.procs.len() - 1);
                self.procs.len() - 1
            }
        };
        self.last_pid = Some((pid, index));
        index
    }

    #[inline]
    fn note_live_peak(&mut self, ts: u64) {
        let live = self.totals.live();
        if live > self.peak.live_bytes {
            self.peak = PeakLive {
                ts_ns: ts,
                live_bytes: live,
                live_blocks: self.totals.live_blocks,
                go_live: self.totals.go_live,
                footprint: self.totals.footprint(),
                mapped_footprint: self.totals.mapped_footprint(),
            };
        }
    }

    fn note_footprint(&mut self, p: usize, ts: u64, before: (u64, u64)) {
        let proc = &self.procs[p];
        let (mapped, brk) = (proc.space.heap_bytes(), proc.brk_heap());
        self.totals.mapped_heap = self.totals.mapped_heap - before.0 + mapped;
        self.totals.brk_heap = self.totals.brk_heap - before.1 + brk;
        self.note_footprint_peaks(ts);
    }

    fn note_footprint_peaks(&mut self, ts: u64) {
        let footprint = self.totals.footprint();
        if footprint > self.peak_footprint.0 {
            self.peak_footprint = (footprint, ts);
        }
        let mapped = self.totals.mapped_footprint();
        if mapped > self.peak_mapped_footprint.0 {
            self.peak_mapped_footprint = (mapped, ts);
        }
        if self.totals.resident > self.peak_resident.0 {
            self.peak_resident = (self.totals.resident, ts);
        }
    }

    /// An `rss` row: the process's resident memory now. Totals sum each process's last sample.
    fn rss_row(&mut self, p: usize, batch: &EventBatch, i: usize, ts: u64) {
        self.counters.rss_samples += 1;
        let now = (
            opt(&batch.rss_bytes, i).unwrap_or(0).min(MAX_SIZE),
            opt(&batch.heap_rss_bytes, i).unwrap_or(0).min(MAX_SIZE),
        );
        let before = std::mem::replace(&mut self.procs[p].resident, now);
        self.totals.resident = self.totals.resident - before.0 + now.0;
        self.totals.heap_resident = self.totals.heap_resident - before.1 + now.1;
        self.totals.resident_footprint = true;
        self.note_footprint_peaks(ts);
    }

    /// [`Replay::apply`] of row `i`, after starting to load the live-block slots of the row
    /// [`PREFETCH_ROWS`] ahead: the cache misses of the block table overlap with the work on
    /// the rows in between. Rows must be applied in order for the prefetches to be of use.
    #[inline]
    pub fn apply_prefetching(&mut self, batch: &EventBatch, i: usize, out: &mut Pending) {
        if i + PREFETCH_ROWS < batch.rows {
            self.prefetch(batch, i + PREFETCH_ROWS);
        }
        self.apply(batch, i, out);
    }

    /// Starts loading the live-block slots row `i` will look up, when it belongs to the
    /// process of the last row.
    #[inline]
    fn prefetch(&self, batch: &EventBatch, i: usize) {
        let Some((pid, p)) = self.last_pid else {
            return;
        };
        if batch.pid.values()[i] != pid {
            return;
        }
        let blocks = &self.procs[p].blocks;
        blocks.prefetch(batch.addr.values()[i]);
        let old_addr = batch.old_addr(i);
        if old_addr != 0 {
            blocks.prefetch(old_addr);
        }
    }

    /// Applies row `i` of `batch`, appending what it resolved to `out`.
    #[inline]
    pub fn apply(&mut self, batch: &EventBatch, i: usize, out: &mut Pending) {
        let ts = batch.ts.values()[i];
        let pid = batch.pid.values()[i];
        self.counters.rows += 1;
        if ts < self.last_ts {
            self.counters.ts_backwards += 1;
        }
        self.last_ts = ts;
        let p = self.proc_index(pid);
        let event = batch.event(i);
        if matches!(event, Event::Alloc | Event::Realloc | Event::GcEnd) {
            self.seen[batch.runtime(i) as usize] = true;
        }
        match event {
            Event::Alloc => self.alloc_row(p, batch, i, ts, out),
            Event::Free => self.free_row(p, batch, i, ts, out),
            Event::Realloc => self.realloc_row(p, batch, i, ts, out),
            Event::Mmap
            | Event::Munmap
            | Event::Mremap
            | Event::Brk
            | Event::Mprotect
            | Event::Madvise => {
                self.space_row(p, batch, i, ts);
            }
            Event::GcStart | Event::GcEnd | Event::StwStart | Event::StwEnd => {
                self.gc_row(p, batch, i, ts, out)
            }
            Event::Rss => self.rss_row(p, batch, i, ts),
            Event::Unknown => self.counters.unknown_events += 1,
        }
    }

    #[inline(always)]
    fn alloc_row(&mut self, p: usize, batch: &EventBatch, i: usize, ts: u64, out: &mut Pending) {
        let addr = batch.addr.values()[i];
        let size = batch.size.values()[i];
        if addr == 0 {
            self.counters.failed_allocs += 1;
            return;
        }
        if size > MAX_SIZE {
            self.counters.implausible_rows += 1;
            return;
        }
        let block = Block::new(batch, i, ts, size);
        let kind = block.kind;
        match kind {
            BlockKind::Go => {
                self.counters.go_allocs += 1;
                let proc = &mut self.procs[p];
                proc.seq += 1;
                proc.go_live += size;
                self.totals.go_live += size;
                let block = Block {
                    seq: proc.seq,
                    ..block
                };
                let pid = proc.pid;
                self.emit_alloc(out, Via::Call, false, pid, addr, ts, block);
            }
            BlockKind::PyArena => {
                self.counters.arena_allocs += 1;
                let previous = self.procs[p].blocks.insert(addr, block);
                if let Some(previous) = previous {
                    self.forget(previous);
                }
                self.totals.arena_bytes += size;
            }
            _ => {
                if self.new_block(p, addr, block, ts, Via::Call, false, out) {
                    self.counters.allocs += 1;
                }
            }
        }
    }

    /// Drops `block` from the totals without an event (arena bookkeeping).
    fn forget(&mut self, block: Block) {
        if block.kind == BlockKind::PyArena {
            self.totals.arena_bytes -= block.size;
        }
    }

    /// Makes `block` live at `addr` and reports it.
    /// Makes `block` live at `addr` at time `ts` and reports it. Returns false when the row was
    /// the outer half of a nested pair (no new block).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn new_block(
        &mut self,
        p: usize,
        addr: u64,
        block: Block,
        ts: u64,
        via: Via,
        moved: bool,
        out: &mut Pending,
    ) -> bool {
        let proc = &mut self.procs[p];
        let pid = proc.pid;
        let seq = proc.seq + 1;
        let block = if via == Via::Call {
            Block { seq, ..block }
        } else {
            block
        };
        // One hash lookup on the common path: insert, then look at what was there.
        if let Some(existing) = proc.blocks.insert(addr, block) {
            if existing.kind == BlockKind::PyArena {
                self.forget(existing);
            } else if via == Via::Call && proc.recent_allocs.contains(block.tid, addr) {
                // The outer call of a nested pair (operator new → malloc) returns after the
                // inner one with the same pointer and no free in between: one allocation,
                // attributed to the outer (user-facing) call.
                self.counters.nested_duplicates += 1;
                let merged = Block {
                    ts: existing.ts,
                    seq: existing.seq,
                    ..block
                };
                proc.blocks.insert(addr, merged);
                self.relabel(pid, addr, existing, merged, ts, out);
                return false;
            } else {
                self.counters.alloc_over_live += 1;
                self.end_block(p, addr, existing, ts, block.tid, Via::Implicit, out);
            }
        }
        let proc = &mut self.procs[p];
        proc.seq = seq;
        proc.recent_allocs.push(block.tid, addr);
        self.totals.live_bytes += block.size;
        self.totals.live_blocks += 1;
        self.emit_alloc(out, via, moved, pid, addr, ts, block);
        true
    }

    /// Emits the `Alloc` of a block now live (counted in the totals) and updates the peak.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn emit_alloc(
        &mut self,
        out: &mut Pending,
        via: Via,
        moved: bool,
        pid: u32,
        addr: u64,
        ts: u64,
        block: Block,
    ) {
        out.evs.push(Ev {
            kind: EvKind::Alloc,
            via,
            moved,
            pid,
            tid: block.tid,
            ts,
            addr,
            block,
            between: 0,
            live_bytes: self.totals.live(),
        });
        self.note_live_peak(ts);
    }

    /// Rewrites the inner half of a nested pair, still pending, as the outer call.
    #[allow(clippy::too_many_arguments)]
    fn relabel(
        &mut self,
        pid: u32,
        addr: u64,
        inner: Block,
        outer: Block,
        ts: u64,
        out: &mut Pending,
    ) {
        let delta = outer.size as i128 - inner.size as i128;
        self.totals.live_bytes = (self.totals.live_bytes as i128 + delta).max(0) as u64;
        let start = out.evs.len().saturating_sub(NESTED_LOOKBACK);
        if let Some(pos) = out.evs[start..]
            .iter()
            .rposition(|e| e.kind == EvKind::Alloc && e.pid == pid && e.addr == addr)
        {
            let pos = start + pos;
            out.evs[pos].block = outer;
            for ev in &mut out.evs[pos..] {
                ev.live_bytes = (ev.live_bytes as i128 + delta).max(0) as u64;
            }
        } else {
            // The inner event was already reduced (the pair straddled a chunk boundary).
            let live_bytes = self.totals.live();
            let base = Ev {
                kind: EvKind::Free,
                via: Via::Relabel,
                moved: false,
                pid,
                tid: outer.tid,
                ts,
                addr,
                block: inner,
                between: 0,
                live_bytes,
            };
            out.evs.push(base);
            out.evs.push(Ev {
                kind: EvKind::Alloc,
                block: outer,
                ..base
            });
        }
        self.note_live_peak(ts);
    }

    /// Reports the end of `block` (already out of the map).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn end_block(
        &mut self,
        p: usize,
        addr: u64,
        block: Block,
        ts: u64,
        tid: u32,
        via: Via,
        out: &mut Pending,
    ) {
        let proc = &self.procs[p];
        let between = proc.seq.saturating_sub(block.seq);
        let pid = proc.pid;
        self.totals.live_bytes -= block.size;
        self.totals.live_blocks -= 1;
        out.evs.push(Ev {
            kind: EvKind::Free,
            via,
            moved: false,
            pid,
            tid,
            ts,
            addr,
            block,
            between,
            live_bytes: self.totals.live(),
        });
    }

    #[inline(always)]
    fn free_row(&mut self, p: usize, batch: &EventBatch, i: usize, ts: u64, out: &mut Pending) {
        let addr = batch.addr.values()[i];
        if addr == 0 {
            self.counters.free_null += 1;
            return;
        }
        let tid = batch.tid.values()[i];
        self.free_addr(p, addr, ts, tid, out);
    }

    #[inline(always)]
    fn free_addr(&mut self, p: usize, addr: u64, ts: u64, tid: u32, out: &mut Pending) {
        let proc = &mut self.procs[p];
        match proc.blocks.remove(addr) {
            Some(block) if block.kind == BlockKind::PyArena => {
                self.counters.arena_frees += 1;
                self.forget(block);
            }
            Some(block) => {
                self.counters.frees += 1;
                self.end_block(p, addr, block, ts, tid, Via::Call, out);
                self.procs[p].recent_frees.push(tid, addr);
            }
            None if proc.recent_frees.contains(tid, addr) => {
                // The inner free of a nested pair (operator delete → free).
                self.counters.nested_duplicates += 1;
            }
            None => {
                self.counters.free_unknown += 1;
                proc.recent_frees.push(tid, addr);
            }
        }
    }

    fn realloc_row(&mut self, p: usize, batch: &EventBatch, i: usize, ts: u64, out: &mut Pending) {
        self.counters.reallocs += 1;
        let addr = batch.addr.values()[i];
        let size = batch.size.values()[i];
        if size > MAX_SIZE {
            self.counters.implausible_rows += 1;
            return;
        }
        let old_addr = batch.old_addr(i);
        let fresh = Block::new(batch, i, ts, size);
        let tid = fresh.tid;
        if old_addr == 0 {
            if addr == 0 {
                self.counters.failed_allocs += 1;
            } else {
                self.new_block(p, addr, fresh, ts, Via::Call, false, out);
            }
            return;
        }
        if addr == 0 {
            if size == 0 {
                self.free_addr(p, old_addr, ts, tid, out);
            } else {
                self.counters.failed_reallocs += 1;
            }
            return;
        }
        let blocks = &mut self.procs[p].blocks;
        let old = match blocks.remove(old_addr) {
            Some(arena) if arena.kind == BlockKind::PyArena => {
                blocks.insert(old_addr, arena);
                None
            }
            old => old,
        };
        let Some(old) = old else {
            self.counters.realloc_unknown_input += 1;
            self.new_block(p, addr, fresh, ts, Via::Call, false, out);
            return;
        };
        self.end_block(p, old_addr, old, ts, tid, Via::Realloc, out);
        let block = Block {
            ts: old.ts,
            seq: old.seq,
            first_size: old.first_size,
            chain: old.chain.saturating_add(1),
            ..fresh
        };
        self.new_block(p, addr, block, ts, Via::Realloc, addr != old_addr, out);
    }

    fn space_row(&mut self, p: usize, batch: &EventBatch, i: usize, ts: u64) {
        let addr = batch.addr.values()[i];
        let size = batch.size.values()[i];
        let failed = opt(&batch.errno, i).is_some_and(|e| e != 0);
        let proc = &mut self.procs[p];
        let before = (proc.space.heap_bytes(), proc.brk_heap());
        match batch.event(i) {
            Event::Mmap => {
                self.counters.mmaps += 1;
                if failed || addr >= SYSCALL_ERROR_MIN {
                    self.counters.failed_syscalls += 1;
                } else if let Some(range) = space::span(addr, size) {
                    let mapping = Mapping::new(
                        opt(&batch.prot, i).unwrap_or(0x3),
                        opt(&batch.map_flags, i).unwrap_or(space::MAP_ANONYMOUS),
                        opt(&batch.fd, i).unwrap_or(-1),
                    );
                    proc.space.map(range, mapping);
                }
            }
            Event::Munmap => {
                self.counters.munmaps += 1;
                if failed {
                    self.counters.failed_syscalls += 1;
                } else if let Some(range) = space::span(addr, size) {
                    proc.space.unmap(range);
                }
            }
            Event::Mremap => {
                self.counters.mremaps += 1;
                let old_addr = batch.old_addr(i);
                let old_size = opt(&batch.old_size, i).unwrap_or(0);
                if failed || addr >= SYSCALL_ERROR_MIN {
                    self.counters.failed_syscalls += 1;
                } else {
                    let mapping = proc.space.get(old_addr).unwrap_or(Mapping::new(
                        0x3,
                        space::MAP_ANONYMOUS,
                        -1,
                    ));
                    if let Some(range) = space::span(old_addr, old_size) {
                        proc.space.unmap(range);
                    }
                    if let Some(range) = space::span(addr, size) {
                        proc.space.map(range, mapping);
                    }
                }
            }
            Event::Brk => {
                self.counters.brks += 1;
                if addr != 0 && addr < SYSCALL_ERROR_MIN {
                    let start = *proc.brk_start.get_or_insert(addr);
                    proc.brk_end = addr.max(start);
                }
            }
            Event::Mprotect => {
                self.counters.mprotects += 1;
                if !failed && let Some(range) = space::span(addr, size) {
                    proc.space.protect(range, opt(&batch.prot, i).unwrap_or(0));
                }
            }
            Event::Madvise => {
                self.counters.madvises += 1;
                let advice = opt(&batch.map_flags, i).unwrap_or(0);
                if !failed && (advice == MADV_DONTNEED || advice == MADV_FREE) {
                    self.totals.released = self.totals.released.saturating_add(size.min(MAX_SIZE));
                }
            }
            _ => {}
        }
        self.note_footprint(p, ts, before);
    }

    fn gc_row(&mut self, p: usize, batch: &EventBatch, i: usize, ts: u64, out: &mut Pending) {
        let runtime = batch.runtime(i);
        let proc = &mut self.procs[p];
        let pid = proc.pid;
        match batch.event(i) {
            Event::GcStart => {
                proc.gc_start = Some((ts, opt(&batch.gc_cycle, i), opt(&batch.gc_generation, i)))
            }
            Event::GcEnd => {
                let heap_live = opt(&batch.heap_live, i).map(|v| v.min(MAX_SIZE));
                let heap_goal = opt(&batch.heap_goal, i).map(|v| v.min(MAX_SIZE));
                let (start_ns, cycle, generation) = match proc.gc_start.take() {
                    Some(start) => start,
                    None => {
                        self.counters.unmatched_ends += 1;
                        (ts, None, None)
                    }
                };
                if let Some(live) = heap_live {
                    self.totals.go_live = self.totals.go_live - proc.go_live + live;
                    proc.go_live = live;
                }
                if let Some(goal) = heap_goal {
                    self.totals.go_heap_goal = self.totals.go_heap_goal - proc.go_goal + goal;
                    proc.go_goal = goal;
                }
                self.counters.gc_cycles += 1;
                out.marks.push(Mark::Gc(GcSpan {
                    pid,
                    runtime,
                    start_ns,
                    end_ns: ts.max(start_ns),
                    cycle: opt(&batch.gc_cycle, i).or(cycle),
                    generation: opt(&batch.gc_generation, i).or(generation),
                    heap_live,
                    heap_goal,
                    collected: opt(&batch.collected, i).map(|v| v.min(MAX_SIZE)),
                    uncollectable: opt(&batch.uncollectable, i).map(|v| v.min(MAX_SIZE)),
                    go_heap: go_heap(batch, i),
                    go_cpu: go_cpu(batch, i),
                }));
            }
            Event::StwStart => proc.stw_start = Some((ts, batch.reason(i))),
            Event::StwEnd => {
                let (start_ns, reason) = match proc.stw_start.take() {
                    Some(start) => start,
                    None => {
                        self.counters.unmatched_ends += 1;
                        (ts, batch.reason(i))
                    }
                };
                self.counters.stw_pauses += 1;
                out.marks.push(Mark::Stw(StwSpan {
                    pid,
                    start_ns,
                    end_ns: ts.max(start_ns),
                    reason: reason.or(batch.reason(i)),
                }));
            }
            _ => {}
        }
    }
}

/// A gc_end row's span accounting, when it has all four figures.
fn go_heap(batch: &EventBatch, i: usize) -> Option<GoHeap> {
    Some(GoHeap {
        inuse: opt(&batch.heap_inuse, i)?.min(MAX_SIZE),
        idle: opt(&batch.heap_idle, i)?.min(MAX_SIZE),
        released: opt(&batch.heap_released, i)?.min(MAX_SIZE),
        stacks: opt(&batch.stack_inuse, i).unwrap_or(0).min(MAX_SIZE),
    })
}

/// A gc_end row's CPU accounting, when it has both figures.
fn go_cpu(batch: &EventBatch, i: usize) -> Option<GoCpu> {
    Some(GoCpu {
        gc_ns: opt(&batch.gc_cpu_ns, i)?,
        capacity_ns: opt(&batch.cpu_capacity_ns, i)?,
        gomaxprocs: opt(&batch.gomaxprocs, i),
    })
}
