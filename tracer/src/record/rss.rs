//! Resident-memory sampling: every traced process's resident set and the resident bytes of its
//! heap, at a fixed period, written as `rss` rows.
//!
//! **Source.** Measured on this machine's kernel (6.18, docs/benchmarks.md has the figures) for
//! a CPython process with 68 MiB resident in 124 mappings: `/proc/PID/statm` 2 µs per read,
//! `status` 12 µs, `smaps_rollup` 1.6 ms, `smaps` 2.0 ms. `smaps_rollup` and `smaps` walk
//! every page table of the process under its mmap lock, so their cost grows with the resident
//! size (about 100 ns per resident page): at a 10 ms period a 1 GiB process would need more
//! than the whole period. `statm` reads the kernel's RSS counters, O(1) whatever the size,
//! exact to the per-CPU counter batches (≤ 32 pages per CPU), the same counters `VmHWM` comes
//! from. So each sample reads:
//!
//! - `rss_bytes` = statm `resident`;
//! - anonymous resident bytes = `resident − shared` (the kernel's `RssAnon`; `shared` is
//!   `RssFile + RssShmem`);
//! - `heap_rss_bytes` = anonymous resident bytes minus those that are not heap: copy-on-write
//!   pages of private file mappings (a program's and its libraries' `.data`, 1.3 MiB for
//!   libpython) and the main thread's `[stack]`. These few small ranges are read from
//!   `/proc/PID/pagemap` (present and not file-backed) every [`CORRECTION_EVERY`] samples; they
//!   change only when a library is loaded or a stack grows. What remains is the brk heap and
//!   the anonymous private mappings, the footprint the trace's mmap/brk rows describe. Thread
//!   stacks are anonymous writable mappings that /proc cannot tell apart from heap mappings:
//!   their touched pages count (the trace's mapped footprint leaves them out by their
//!   `MAP_STACK` flag).
//!
//! Timestamps are CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns` and so of every other row,
//! read right before the counters.

use std::{
    fs::File,
    io,
    ops::Range,
    os::unix::fs::FileExt as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use nix::time::ClockId;
use rustc_hash::FxHashMap;

use super::process;
use crate::procmaps;

/// The `func` of `rss` rows and run.json's `rss.source`.
pub const SOURCE: &str =
    "/proc/PID/statm (resident; heap = resident - shared - non-heap anonymous pages from pagemap)";
/// The `func` value of `rss` rows.
pub const FUNC: &str = "statm";
/// Default sampling period.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);
/// Samples between two readings of the non-heap anonymous pages (100 ms at the default period).
pub const CORRECTION_EVERY: u32 = 10;
/// pagemap: page present in RAM.
const PM_PRESENT: u64 = 1 << 63;
/// pagemap: file-backed page or shared anonymous page.
const PM_FILE: u64 = 1 << 61;

/// One reading of one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub ts_ns: u64,
    pub pid: u32,
    pub rss_bytes: u64,
    pub heap_rss_bytes: u64,
}

/// The counters of one `/proc/PID/statm` read, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statm {
    /// Virtual size; 0 once the process has exited (a zombie has no memory).
    pub size: u64,
    pub resident: u64,
    /// File-backed and shared-memory resident pages.
    pub shared: u64,
}

impl Statm {
    /// Parses `size resident shared text lib data dt`.
    pub fn parse(text: &[u8]) -> Option<Statm> {
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
        Some(Statm {
            size: fields.next()??,
            resident: fields.next()??,
            shared: fields.next()??,
        })
    }

    /// Anonymous resident pages (`RssAnon`).
    pub fn anon(&self) -> u64 {
        self.resident.saturating_sub(self.shared)
    }
}

/// The ranges whose anonymous pages are not heap: writable private file mappings (their
/// copy-on-write pages) and the main thread's stack.
pub fn non_heap_ranges(maps: &[procmaps::Mapping]) -> Vec<Range<u64>> {
    maps.iter()
        .filter(|m| {
            let perms = m.perms.as_bytes();
            let private_writable = perms.get(1) == Some(&b'w') && perms.get(3) == Some(&b'p');
            (private_writable && m.is_file()) || m.path == "[stack]"
        })
        .map(|m| m.start..m.end)
        .collect()
}

/// Anonymous pages present in RAM among pagemap entries.
pub fn anon_present(entries: &[u64]) -> u64 {
    entries
        .iter()
        .filter(|&&e| e & PM_PRESENT != 0 && e & PM_FILE == 0)
        .count() as u64
}

/// `heap_rss_bytes` of a statm reading, given the non-heap anonymous pages.
pub fn heap_resident(statm: Statm, non_heap_anon: u64, page: u64) -> u64 {
    statm.anon().saturating_sub(non_heap_anon) * page
}

/// One sampled process: its open statm and pagemap files and the last correction.
struct Tracked {
    pid: u32,
    statm: File,
    pagemap: Option<File>,
    non_heap_anon: u64,
    /// Samples until the next correction.
    until_correction: u32,
}

impl Tracked {
    fn open(pid: u32) -> io::Result<Tracked> {
        Ok(Tracked {
            pid,
            statm: File::open(format!("/proc/{pid}/statm"))?,
            pagemap: File::open(format!("/proc/{pid}/pagemap")).ok(),
            non_heap_anon: 0,
            until_correction: 0,
        })
    }

    /// Reads the counters; `None` once the process has exited.
    fn sample(&mut self, page: u64, buf: &mut Vec<u8>) -> Option<Sample> {
        if self.until_correction == 0 {
            self.non_heap_anon = self.non_heap_anon_pages(buf).unwrap_or(self.non_heap_anon);
            self.until_correction = CORRECTION_EVERY;
        }
        self.until_correction -= 1;
        let ts_ns = process::now(ClockId::CLOCK_MONOTONIC);
        buf.resize(128, 0);
        let n = self.statm.read_at(buf, 0).ok()?;
        let statm = Statm::parse(&buf[..n])?;
        (statm.size > 0).then(|| Sample {
            ts_ns,
            pid: self.pid,
            rss_bytes: statm.resident * page,
            heap_rss_bytes: heap_resident(statm, self.non_heap_anon, page),
        })
    }

    fn non_heap_anon_pages(&self, buf: &mut Vec<u8>) -> io::Result<u64> {
        let pagemap = self.pagemap.as_ref().ok_or(io::ErrorKind::NotFound)?;
        let maps = procmaps::read(self.pid)?;
        let page = page_size();
        let mut total = 0;
        for range in non_heap_ranges(&maps) {
            let pages = ((range.end - range.start) / page) as usize;
            buf.resize(pages * 8, 0);
            let n = pagemap.read_at(buf, range.start / page * 8)?;
            let entries: Vec<u64> = buf[..n - n % 8]
                .chunks_exact(8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
                .collect();
            total += anon_present(&entries);
        }
        Ok(total)
    }
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096)
}

struct Shared {
    /// Processes to add at the next period.
    new_pids: Mutex<Vec<u32>>,
    samples: Mutex<Vec<Sample>>,
    skipped: AtomicU64,
    taken: AtomicU64,
}

/// A thread sampling the traced processes until stopped. The recording hands it the pids it
/// traces ([`RssSampler::add_pid`]: the top process and each forked descendant); a process
/// that has exited gets one zero row and leaves the set.
pub struct RssSampler {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    interval: Duration,
}

impl RssSampler {
    /// Starts sampling `pids` every `interval`; the first sample is taken at once.
    pub fn start(interval: Duration, pids: &[u32]) -> io::Result<RssSampler> {
        let shared = Arc::new(Shared {
            new_pids: Mutex::new(pids.to_vec()),
            samples: Mutex::new(Vec::new()),
            skipped: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        });
        let (stop, stopped) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("alloctrace-rss".into())
            .spawn({
                let shared = shared.clone();
                move || run(&shared, interval, &stopped)
            })?;
        Ok(RssSampler {
            shared,
            stop: Some(stop),
            thread: Some(thread),
            interval,
        })
    }

    /// Samples `pid` too from the next period on.
    pub fn add_pid(&self, pid: u32) {
        if let Ok(mut pids) = self.shared.new_pids.lock() {
            pids.push(pid);
        }
    }

    /// The samples taken since the last call, oldest first.
    pub fn take(&self) -> Vec<Sample> {
        self.shared
            .samples
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// run.json's `rss`.
    pub fn info(&self) -> trace_format::run::RssSampling {
        trace_format::run::RssSampling {
            interval_ns: u64::try_from(self.interval.as_nanos()).unwrap_or(u64::MAX),
            source: SOURCE.to_owned(),
            samples: self.shared.taken.load(Ordering::Relaxed),
            skipped: self.shared.skipped.load(Ordering::Relaxed),
        }
    }

    /// Stops the thread; the samples it took and nobody took yet stay for [`Self::take`].
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sampling loop: one reading of every process per period, on an absolute schedule (a late
/// period is skipped and counted, never made up with a burst).
fn run(shared: &Shared, interval: Duration, stopped: &mpsc::Receiver<()>) {
    let page = page_size();
    let mut tracked: FxHashMap<u32, Tracked> = FxHashMap::default();
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    let mut next = Instant::now();
    loop {
        if let Ok(mut new) = shared.new_pids.lock() {
            for pid in new.drain(..) {
                if let Ok(t) = Tracked::open(pid) {
                    tracked.entry(pid).or_insert(t);
                }
            }
        }
        tracked.retain(|&pid, t| match t.sample(page, &mut buf) {
            Some(sample) => {
                batch.push(sample);
                true
            }
            None => {
                // The process has exited: one zero sample ends its resident memory, so sums
                // over a tree's processes do not keep counting it.
                batch.push(Sample {
                    ts_ns: process::now(ClockId::CLOCK_MONOTONIC),
                    pid,
                    rss_bytes: 0,
                    heap_rss_bytes: 0,
                });
                false
            }
        });
        if !batch.is_empty() {
            shared
                .taken
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            if let Ok(mut samples) = shared.samples.lock() {
                samples.append(&mut batch);
            }
            batch.clear();
        }
        next += interval;
        let now = Instant::now();
        if now > next {
            let behind = (now - next).as_nanos() / interval.as_nanos().max(1);
            let behind = u64::try_from(behind).unwrap_or(u64::MAX);
            shared.skipped.fetch_add(behind, Ordering::Relaxed);
            next += interval * u32::try_from(behind).unwrap_or(u32::MAX);
            if next < now {
                next += interval;
            }
        }
        match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that statm's first three fields are read and anonymous = resident − shared.
    #[test]
    fn statm_parses() {
        let s = Statm::parse(b"262977 2049 1537 1 0 2102 0\n").unwrap();
        assert_eq!(
            s,
            Statm {
                size: 262977,
                resident: 2049,
                shared: 1537
            }
        );
        assert_eq!(s.anon(), 512);
        // A zombie: no memory at all.
        assert_eq!(Statm::parse(b"0 0 0 0 0 0 0\n").unwrap().size, 0);
        assert_eq!(Statm::parse(b"12 x 3"), None);
        assert_eq!(Statm::parse(b""), None);
    }

    /// Check which mappings hold non-heap anonymous pages: private writable file mappings and
    /// [stack]; never anonymous mappings, [heap], read-only or shared file mappings.
    #[test]
    fn non_heap_mappings() {
        let maps = procmaps::parse(
            "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 100 /usr/bin/prog\n\
             55d0c0c00000-55d0c0c02000 rw-p 00002000 08:01 100 /usr/bin/prog\n\
             55d0c1000000-55d0c1400000 rw-p 00000000 00:00 0 [heap]\n\
             7f0000000000-7f0040000000 rw-p 00000000 00:00 0 \n\
             7f1000000000-7f1000001000 rw-s 00000000 08:01 200 /dev/shm/x\n\
             7f2000000000-7f2000003000 rw-p 00000000 08:01 300 /usr/lib/libc.so.6\n\
             7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n",
        );
        assert_eq!(
            non_heap_ranges(&maps),
            vec![
                0x55d0c0c00000..0x55d0c0c02000,
                0x7f2000000000..0x7f2000003000,
                0x7ffd00000000..0x7ffd00021000,
            ]
        );
    }

    /// Check the reduction: heap = anonymous − non-heap anonymous pages, where only present,
    /// not file-backed pagemap entries count.
    #[test]
    fn resident_reduction() {
        let file_page = PM_PRESENT | PM_FILE | 0x1234;
        let anon_page = PM_PRESENT | 0x99;
        let swapped = 1 << 62;
        assert_eq!(
            anon_present(&[file_page, anon_page, swapped, 0, anon_page]),
            2
        );
        let statm = Statm {
            size: 1 << 20,
            resident: 3000,
            shared: 1000,
        };
        assert_eq!(heap_resident(statm, 2, 4096), 1998 * 4096);
        // Counters read a moment apart never make the heap negative.
        assert_eq!(heap_resident(statm, 5000, 4096), 0);
    }

    /// Check the sampler on this very process: rows keep coming, on the trace's clock, and the
    /// heap part holds a block this process has written.
    #[test]
    fn samples_own_process() {
        let pid = std::process::id();
        let t0 = process::now(ClockId::CLOCK_MONOTONIC);
        let mut sampler = RssSampler::start(Duration::from_millis(1), &[pid]).unwrap();
        let wait_for = |sampler: &RssSampler| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(last) = sampler.take().last() {
                    return *last;
                }
                assert!(Instant::now() < deadline, "no sample in 10 s");
                thread::yield_now();
            }
        };
        let before = wait_for(&sampler);
        let mut block = vec![1u8; 64 << 20];
        block[12345] = 2;
        let _ = sampler.take();
        let after = wait_for(&sampler);
        assert!(std::hint::black_box(&block)[12345] == 2);
        sampler.stop();
        assert!(before.ts_ns >= t0 && after.ts_ns > before.ts_ns);
        assert_eq!(after.pid, pid);
        assert!(after.rss_bytes >= after.heap_rss_bytes);
        // Other tests of this binary allocate and free meanwhile: check the level, not the
        // growth. The 64 MiB block is written and held, so it is resident heap.
        assert!(
            after.heap_rss_bytes >= 64 << 20,
            "heap resident {} with 64 MiB held (before: {})",
            after.heap_rss_bytes,
            before.heap_rss_bytes
        );
    }
}
