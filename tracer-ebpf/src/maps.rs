//! The maps shared with user space. Names match `tracer_common::maps`.

use aya_ebpf::{
    bindings::{
        BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE,
        bpf_map_type::{BPF_MAP_TYPE_STACK_TRACE, BPF_MAP_TYPE_TASK_STORAGE},
    },
    helpers::generated::{bpf_get_current_task_btf, bpf_task_storage_get},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    counter::Counter,
    maps::{DEFAULT_RING_BYTES, MAX_STACK_FRAMES, MAX_STACKS, MAX_TARGETS, MAX_THREADS},
    mem::PendingSyscall,
    probe::{MAX_PROBES, ProbeConfig},
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

/// Indexed by `Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Per-probe argument layout and reads, indexed by probe id (set by user space before attach).
#[map]
pub static PROBES: Array<ProbeConfig> = Array::with_max_entries(MAX_PROBES, 0);

/// Go allocation calls in progress, keyed by (process, goroutine): a goroutine may block inside
/// mallocgc (GC assist) and resume on another thread, so per-thread state would not do.
#[map]
pub static GO_CALLS: LruHashMap<GoKey, GoCall> = LruHashMap::with_max_entries(MAX_THREADS, 0);

/// Key of `GO_CALLS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoKey {
    pub tgid: u64,
    /// The goroutine's `g` pointer (register R14 in Go's internal ABI).
    pub g: u64,
}

/// A Go allocation call in progress.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoCall {
    pub depth: u32,
    pub probe: u32,
    pub size: u64,
    pub type_ptr: u64,
    pub stack_id: i32,
    pub _pad: u32,
    pub caller: u64,
}

/// User stacks of allocations (frame-pointer walks), deduplicated by the kernel.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "STACKS")]
pub static STACKS: StackMap = StackMap::new();

/// A `BPF_MAP_TYPE_STACK_TRACE` map with [`MAX_STACK_FRAMES`]-frame values and
/// [`MAX_STACKS`] entries, in libbpf's BTF map layout. aya-ebpf's `StackTrace` fixes the value
/// at 127 frames, which would make a map with enough buckets to keep hash collisions (lost
/// stacks) rare cost over 60 MiB of kernel memory; the innermost 64 frames are what a call
/// site needs.
#[repr(C)]
pub struct StackMap {
    r#type: *const [i32; BPF_MAP_TYPE_STACK_TRACE as usize],
    key: *const u32,
    value: *const [u64; MAX_STACK_FRAMES as usize],
    max_entries: *const [i32; MAX_STACKS as usize],
}

// SAFETY: placeholder pointers never dereferenced; the kernel owns the storage.
unsafe impl Sync for StackMap {}

impl StackMap {
    pub const fn new() -> Self {
        StackMap {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
        }
    }

    pub fn as_ptr(&self) -> *mut core::ffi::c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }
}

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
