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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Threads {
    /// Per process, over all its threads: (pid, allocs, alloc_bytes, frees, live_bytes).
    #[serde(skip)]
    pub per_process: Vec<(u32, u64, u64, u64, u64)>,
    pub threads: u64,
    pub cross_thread_frees: u64,
    /// Threads by bytes allocated, largest first.
    pub rows: Vec<ThreadRow>,
}

pub struct ThreadsReducer {
    index: FxHashMap<(u32, u32), usize>,
    rows: Vec<ThreadRow>,
    /// Direct-mapped cache of (pid, tid) → row, so the common lookups cost one compare
    /// instead of a hash-map probe (events of a few threads interleave at random).
    cache: [(u64, usize); 64],
    top: usize,
}

impl ThreadsReducer {
    pub fn new(top: usize) -> Self {
        ThreadsReducer {
            index: FxHashMap::default(),
            rows: Vec::new(),
            cache: [(u64::MAX, 0); 64],
            top,
        }
    }

    #[inline]
    fn row(&mut self, pid: u32, tid: u32) -> &mut ThreadRow {
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
        let next = self.rows.len();
        let index = *self.index.entry((pid, tid)).or_insert(next);
        if index == next {
            self.rows.push(ThreadRow {
                pid,
                tid,
                ..ThreadRow::default()
            });
        }
        self.cache[slot] = (key, index);
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
        let row = self.row(ev.pid, ev.tid);
        row.allocs += count;
        row.alloc_bytes = row.alloc_bytes.saturating_add(bytes);
        row.live_bytes = row.live_bytes.saturating_add(ev.block.size);
    }

    #[inline(always)]
    fn free(&mut self, _bucket: usize, ev: &Ev) {
        let (count, bytes) = counted(ev);
        let row = self.row(ev.pid, ev.tid);
        row.frees += count;
        row.freed_bytes = row.freed_bytes.saturating_add(bytes);
        row.cross_thread_frees += u64::from(ev.block.tid != ev.tid && ev.via == Via::Call);
        let owner = self.row(ev.pid, ev.block.tid);
        owner.live_bytes = owner.live_bytes.saturating_sub(ev.block.size);
    }

    fn finish(self, _end: &End<'_>) -> Threads {
        let mut rows = self.rows;
        rows.sort_unstable_by(|a, b| {
            b.alloc_bytes
                .cmp(&a.alloc_bytes)
                .then((a.pid, a.tid).cmp(&(b.pid, b.tid)))
        });
        let mut per_process: Vec<(u32, u64, u64, u64, u64)> = Vec::new();
        for r in &rows {
            match per_process.iter_mut().find(|p| p.0 == r.pid) {
                Some(p) => {
                    p.1 += r.allocs;
                    p.2 = p.2.saturating_add(r.alloc_bytes);
                    p.3 += r.frees;
                    p.4 = p.4.saturating_add(r.live_bytes);
                }
                None => per_process.push((r.pid, r.allocs, r.alloc_bytes, r.frees, r.live_bytes)),
            }
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
