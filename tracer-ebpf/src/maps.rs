//! The maps shared with user space. Names match `tracer_common::maps`.

use aya_ebpf::{
    bindings::{
        BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE,
    },
    helpers::generated::{bpf_get_current_task_btf, bpf_task_storage_get},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    counter::Counter,
    gc::StatReads,
    golang::{GoCall, GoKey},
    maps::{
        DEFAULT_PID_MAX, DEFAULT_RING_BYTES, MAX_STACKS, MAX_STAT_PROBES, MAX_TARGETS, MAX_THREADS,
    },
    mem::PendingSyscall,
    probe::{MAX_PROBES, ProbeConfig},
    python::PyStackConfig,
    stack::StackValue,
    thread::ThreadState,
};

/// Every record, in the order the probes fired. User space may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Allocator call in progress, per thread: task-local storage, so the lookup on every probe hit
/// is a pointer chase instead of a hash, and the entry goes away with the thread.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "THREADS")]
pub static THREADS: TaskStorage<ThreadState> = TaskStorage::new();

/// A `BPF_MAP_TYPE_TASK_STORAGE` map in libbpf's BTF map layout. Written by hand because
/// aya-ebpf 0.2.1 (the newest that builds with rustc 1.97) has no task-storage map; the fields
/// are never read, the loader reads their BTF types.
#[repr(C)]
pub struct TaskStorage<V> {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const V,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are placeholder pointers that are never dereferenced; the kernel owns the
// storage.
unsafe impl<V> Sync for TaskStorage<V> {}

impl<V> TaskStorage<V> {
    pub const fn new() -> Self {
        TaskStorage {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// The current thread's value; created zeroed when `create` is set and there is none.
    #[inline(always)]
    pub fn current(&self, create: bool) -> Option<*mut V> {
        let flags = if create {
            u64::from(BPF_LOCAL_STORAGE_GET_F_CREATE)
        } else {
            0
        };
        // SAFETY: `self` is a map definition the loader relocated; the task pointer comes from
        // the helper that returns the current task, which the verifier trusts.
        let ptr = unsafe {
            bpf_task_storage_get(
                core::ptr::from_ref(self).cast_mut().cast(),
                bpf_get_current_task_btf(),
                core::ptr::null_mut(),
                flags,
            )
        };
        (!ptr.is_null()).then_some(ptr.cast())
    }
}

/// Address-space syscall in progress per thread.
#[map]
pub static SYSCALLS: LruHashMap<u64, PendingSyscall> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// Bytes each CPU submitted since it last woke the reader (see `emit::submit_flags`).
#[map]
pub static WAKE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Indexed by `Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Per-probe argument layout and reads, indexed by probe id (set by user space before attach).
#[map]
pub static PROBES: Array<ProbeConfig> = Array::with_max_entries(MAX_PROBES, 0);

/// What each stats probe reads, keyed by probe id (a few probes, so a hash rather than an array
/// as large as `PROBES`).
#[map]
pub static STAT_READS: HashMap<u32, StatReads> = HashMap::with_max_entries(MAX_STAT_PROBES, 0);

/// Go allocation calls, keyed by (process, goroutine): a goroutine may block inside mallocgc (GC
/// assist) and resume on another thread, so per-thread state would not do. A goroutine's entry
/// stays when its call ends (depth 0) and is updated in place by its next call; the least
/// recently used entries (goroutines that are gone) make room.
#[map]
pub static GO_CALLS: LruHashMap<GoKey, GoCall> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// User stacks of allocations (frame-pointer walks), keyed by a 64-bit hash of their frames.
///
/// Not a `BPF_MAP_TYPE_STACK_TRACE`: that map keys stacks by bucket, and two stacks hashing to
/// one bucket lose the second on every hit (hundreds of lost stacks per CPython run were seen).
/// Here distinct stacks never collide in practice, and entries are allocated as stacks appear
/// (`BPF_F_NO_PREALLOC`), so memory follows the number of distinct stacks.
#[map]
pub static STACKS: HashMap<u64, StackValue> =
    HashMap::with_max_entries(MAX_STACKS, BPF_F_NO_PREALLOC);

/// CPython frame-walk configuration per process (tgid), for the probes marked `STACK_PYTHON`.
#[map]
pub static PYTHON_STACKS: HashMap<u32, PyStackConfig> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// The traced processes: `process::flags` bits indexed by tgid (sized to `pid_max` at load).
/// Uprobes are attached per file for every process and syscall tracepoints fire system-wide:
/// every program checks this first. An array, not a hash: its lookup is an indexed load, which
/// keeps the check cheap on the per-allocation path.
#[map]
pub static TARGETS: Array<u32> = Array::with_max_entries(DEFAULT_PID_MAX, 0);

/// Threads of held processes inside an mmap of an executable file (between the syscall's entry
/// and exit).
#[map]
pub static HOLD_MMAPS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(MAX_TARGETS, 0);

/// The `TARGETS` bits of the process `pid_tgid` belongs to (0: not traced).
#[inline(always)]
pub fn target_flags(pid_tgid: u64) -> u32 {
    TARGETS.get((pid_tgid >> 32) as u32).copied().unwrap_or(0)
}

/// Whether the process `pid_tgid` belongs to is traced.
#[inline(always)]
pub fn is_traced(pid_tgid: u64) -> bool {
    target_flags(pid_tgid) & tracer_common::process::flags::TRACED != 0
}

/// Bytes waiting in `EVENTS` above which a submit wakes the reader (set by user space at load).
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;

pub fn wakeup_bytes() -> u64 {
    // SAFETY: a plain read of a global; volatile so the compiler does not fold the default value
    // in, which user space overrides when it loads the object.
    unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) }
}
