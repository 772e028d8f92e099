//! The header every ring-buffer record starts with.

/// What a record describes. The discriminant is written by the eBPF programs; user space maps
/// it to the trace's `event` column (`record::rows::column_event` in the tracer).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Alloc = 1,
    Free = 2,
    Realloc = 3,
    Mmap = 4,
    Munmap = 5,
    Mremap = 6,
    Brk = 7,
    Mprotect = 8,
    Madvise = 9,
    GcStart = 10,
    GcEnd = 11,
    StwStart = 12,
    StwEnd = 13,
    /// A region obtained by a runtime's own page allocator (CPython's arenas), recorded apart
    /// from the object allocations made inside it: a `RuntimeEvent` whose `arg` is the address
    /// and `values[0]` the size. Written as `event = alloc`.
    RegionAlloc = 14,
    /// Its release (`arg` = address). Written as `event = free`.
    RegionFree = 15,
    /// A change in the traced process tree (`process::ProcessEvent`); not a row of `events`.
    Process = 16,
}

impl EventKind {
    /// All kinds, in discriminant order.
    pub const ALL: [EventKind; 16] = [
        EventKind::Alloc,
        EventKind::Free,
        EventKind::Realloc,
        EventKind::Mmap,
        EventKind::Munmap,
        EventKind::Mremap,
        EventKind::Brk,
        EventKind::Mprotect,
        EventKind::Madvise,
        EventKind::GcStart,
        EventKind::GcEnd,
        EventKind::StwStart,
        EventKind::StwEnd,
        EventKind::RegionAlloc,
        EventKind::RegionFree,
        EventKind::Process,
    ];

    pub const fn from_u32(v: u32) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Alloc,
            2 => EventKind::Free,
            3 => EventKind::Realloc,
            4 => EventKind::Mmap,
            5 => EventKind::Munmap,
            6 => EventKind::Mremap,
            7 => EventKind::Brk,
            8 => EventKind::Mprotect,
            9 => EventKind::Madvise,
            10 => EventKind::GcStart,
            11 => EventKind::GcEnd,
            12 => EventKind::StwStart,
            13 => EventKind::StwEnd,
            14 => EventKind::RegionAlloc,
            15 => EventKind::RegionFree,
            16 => EventKind::Process,
            _ => return None,
        })
    }
}

/// Common prefix of every ring-buffer record; `kind` says which struct follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, one clock for the whole trace.
    pub ts_ns: u64,
    /// An [`EventKind`] discriminant.
    pub kind: u32,
    /// Index of the probe that produced the record (see [`crate::probe`]); names the `func`.
    pub probe: u32,
    pub pid: u32,
    pub tid: u32,
    pub _pad: u32,
    /// Bit set of `FLAG_*` values.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 32);
const _: () = assert!(core::mem::offset_of!(EventHeader, kind) == 8);
const _: () = assert!(core::mem::offset_of!(EventHeader, flags) == 28);

/// `flags` bit: the allocation call returned NULL.
pub const FLAG_FAILED: u32 = 1;
/// `flags` bit: a runtime event recorded as a `gc::StatsEvent` (many values) rather than a
/// `gc::RuntimeEvent`.
pub const FLAG_STATS: u32 = 2;
