//! Per-thread view: what each thread allocated and freed, what it still holds, and frees of
//! blocks another thread allocated (which cost glibc a trip to another arena).
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! for t in &report.threads.rows {
//!     println!("{}/{}: {} allocations", t.pid, t.tid, t.allocs);
//! }
//! ```

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{End, Ev, Reducer, Via};
use crate::processes::{Instances, ProcessTotals};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ThreadRow {
    pub pid: u32,
    pub tid: u32,
    /// Blocks made (allocations and reallocs) and their bytes.
    pub allocs: u64,
    pub alloc_bytes: u64,
    /// Blocks ended (frees and reallocs) and their bytes.
    pub frees: u64,
    pub freed_bytes: u64,
    /// Bytes allocated by this thread and still live at the end.
    pub live_bytes: u64,
    /// Frees of blocks allocated by another thread.
    pub cross_thread_frees: u64,
    /// The process's start, when its pid was reused during the recording.
    #[serde(skip)]
    pub process_start_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Threads {
    /// Per process, over all its threads.
    #[serde(skip)]
    pub per_process: Vec<ProcessTotals>,
    pub threads: u64,
    pub cross_thread_frees: u64,
    /// Threads by bytes allocated, largest first.
    pub rows: Vec<ThreadRow>,
}

pub struct ThreadsReducer {
    index: FxHashMap<(u32, Option<u64>, u32), usize>,
    instances: Instances,
    rows: Vec<ThreadRow>,
    /// Direct-mapped cache of (pid, tid) → row, so the common lookups cost one compare
    /// instead of a hash-map probe (events of a few threads interleave at random).
    cache: [(u64, usize); 64],
    top: usize,
}

impl ThreadsReducer {
    /// `instances` tells apart the processes of a reused pid.
    pub fn new(top: usize, instances: Instances) -> Self {
        ThreadsReducer {
            index: FxHashMap::default(),
            instances,
            rows: Vec::new(),
            cache: [(u64::MAX, 0); 64],
            top,
        }
    }

    /// The row of thread `tid` of the process that had pid `pid` at time `ts`.
    #[inline]
    fn row(&mut self, pid: u32, tid: u32, ts: u64) -> &mut ThreadRow {
        if let Some(start) = self.instances.start_of(pid, ts) {
            // A reused pid (rare): past the cache, whose key has no room for the start.
            let index = self.index_of(pid, Some(start), tid);
            return &mut self.rows[index];
        }
        let key = (u64::from(pid) << 32) | u64::from(tid);
        let slot = (tid as usize ^ pid as usize) % self.cache.len();
        let (cached, index) = self.cache[slot];
        let index = if cached == key {
            index
        } else {
            self.miss(pid, tid, key, slot)
        };
        &mut self.rows[index]
    }

    /// The row of a (pid, tid) not in its cache slot: found or made, and cached.
    #[cold]
    fn miss(&mut self, pid: u32, tid: u32, key: u64, slot: usize) -> usize {
        let index = self.index_of(pid, None, tid);
        self.cache[slot] = (key, index);
        index
    }

    /// The row of (pid, process start, tid): found or made.
    fn index_of(&mut self, pid: u32, process_start_ns: Option<u64>, tid: u32) -> usize {
        let next = self.rows.len();
        let index = *self
            .index
            .entry((pid, process_start_ns, tid))
            .or_insert(next);
        if index == next {
            self.rows.push(ThreadRow {
                pid,
                tid,
                process_start_ns,
                ..ThreadRow::default()
            });
        }
        index
    }
}

/// What `ev` adds to its thread's counts: one event and its bytes, or nothing for a relabel
/// (which moves a block between layers of one call; live bytes still follow it).
#[inline(always)]
fn counted(ev: &Ev) -> (u64, u64) {
    let counted = u64::from(ev.via != Via::Relabel);
    (counted, ev.block.size * counted)
}

impl Reducer for ThreadsReducer {
    type Output = Threads;

    #[inline(always)]
    fn alloc(&mut self, _bucket: usize, ev: &Ev) {
        let (count, bytes) = counted(ev);
        let row = self.row(ev.pid, ev.tid, ev.ts);
        row.allocs += count;
        row.alloc_bytes = row.alloc_bytes.saturating_add(bytes);
        row.live_bytes = row.live_bytes.saturating_add(ev.block.size);
    }

    #[inline(always)]
    fn free(&mut self, _bucket: usize, ev: &Ev) {
        let (count, bytes) = counted(ev);
        let row = self.row(ev.pid, ev.tid, ev.ts);
        row.frees += count;
        row.freed_bytes = row.freed_bytes.saturating_add(bytes);
        row.cross_thread_frees += u64::from(ev.block.tid != ev.tid && ev.via == Via::Call);
        let owner = self.row(ev.pid, ev.block.tid, ev.block.ts);
        owner.live_bytes = owner.live_bytes.saturating_sub(ev.block.size);
    }

    fn finish(self, _end: &End<'_>) -> Threads {
        let mut rows = self.rows;
        rows.sort_unstable_by(|a, b| {
            b.alloc_bytes
                .cmp(&a.alloc_bytes)
                .then((a.pid, a.tid).cmp(&(b.pid, b.tid)))
        });
        let mut per_process: Vec<ProcessTotals> = Vec::new();
        let mut index: FxHashMap<(u32, Option<u64>), usize> = FxHashMap::default();
        for r in &rows {
            let i = *index.entry((r.pid, r.process_start_ns)).or_insert_with(|| {
                per_process.push(ProcessTotals {
                    pid: r.pid,
                    start_ns: r.process_start_ns,
                    ..ProcessTotals::default()
                });
                per_process.len() - 1
            });
            let p = &mut per_process[i];
            p.allocs += r.allocs;
            p.alloc_bytes = p.alloc_bytes.saturating_add(r.alloc_bytes);
            p.frees += r.frees;
            p.live_bytes = p.live_bytes.saturating_add(r.live_bytes);
        }
        let threads = rows.len() as u64;
        let cross_thread_frees = rows.iter().map(|r| r.cross_thread_frees).sum();
        rows.truncate(self.top);
        Threads {
            per_process,
            threads,
            cross_thread_frees,
            rows,
        }
    }
}
