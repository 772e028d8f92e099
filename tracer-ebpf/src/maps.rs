//! The maps shared with user space. Names match `tracer_common::maps`.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    counter::Counter,
    maps::{DEFAULT_RING_BYTES, MAX_TARGETS, MAX_THREADS},
    mem::PendingSyscall,
    probe::MAX_PROBES,
    thread::ThreadState,
};

/// Every record, in the order the probes fired. User space may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Allocator call in progress per thread (key: `bpf_get_current_pid_tgid()`).
#[map]
pub static THREADS: LruHashMap<u64, ThreadState> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// Address-space syscall in progress per thread.
#[map]
pub static SYSCALLS: LruHashMap<u64, PendingSyscall> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// Indexed by `Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Hits per probe id.
#[map]
pub static HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

/// Processes (tgid) whose syscalls are traced. Uprobes are filtered by the kernel per process at
/// attach time; syscall tracepoints fire system-wide and check this map first.
#[map]
pub static TARGETS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// Bytes waiting in `EVENTS` above which a submit wakes the reader (set by user space at load).
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;

pub fn wakeup_bytes() -> u64 {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold the default value
    // in, which user space overrides when it loads the object.
    unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) }
}
