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

use super::{Chunk, End, EvKind, Reducer, Via};

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
    pub threads: u64,
    pub cross_thread_frees: u64,
    /// Threads by bytes allocated, largest first.
    pub rows: Vec<ThreadRow>,
}

pub struct ThreadsReducer {
    rows: FxHashMap<(u32, u32), ThreadRow>,
    top: usize,
}

impl ThreadsReducer {
    pub fn new(top: usize) -> Self {
        ThreadsReducer { rows: FxHashMap::default(), top }
    }

    fn row(&mut self, pid: u32, tid: u32) -> &mut ThreadRow {
        self.rows.entry((pid, tid)).or_insert(ThreadRow { pid, tid, ..ThreadRow::default() })
    }
}

impl Reducer for ThreadsReducer {
    type Output = Threads;

    fn observe(&mut self, chunk: &Chunk<'_>) {
        for ev in chunk.evs {
            match ev.kind {
                EvKind::Alloc => {
                    let row = self.row(ev.pid, ev.tid);
                    row.allocs += 1;
                    row.alloc_bytes += ev.block.size;
                    row.live_bytes += ev.block.size;
                }
                EvKind::Free => {
                    let row = self.row(ev.pid, ev.tid);
                    row.frees += 1;
                    row.freed_bytes += ev.block.size;
                    let cross = ev.block.tid != ev.tid;
                    if cross && ev.via == Via::Call {
                        row.cross_thread_frees += 1;
                    }
                    let owner = self.row(ev.pid, ev.block.tid);
                    owner.live_bytes = owner.live_bytes.saturating_sub(ev.block.size);
                }
            }
        }
    }

    fn finish(self, _end: &End<'_>) -> Threads {
        let mut rows: Vec<ThreadRow> = self.rows.into_values().collect();
        rows.sort_unstable_by(|a, b| b.alloc_bytes.cmp(&a.alloc_bytes).then((a.pid, a.tid).cmp(&(b.pid, b.tid))));
        let threads = rows.len() as u64;
        let cross_thread_frees = rows.iter().map(|r| r.cross_thread_frees).sum();
        rows.truncate(self.top);
        Threads { threads, cross_thread_frees, rows }
    }
}
