//! Probe ids: the cookie attached to every uprobe, and the fixed ids of the syscall tracepoints.
//!
//! User space numbers the probes it attaches and passes the number as the BPF cookie; the eBPF
//! program copies it into [`crate::event::EventHeader::probe`]. The trace's `func` column is the
//! name user space registered for that id, so the kernel side never handles strings.

/// The largest probe id plus one.
pub const MAX_PROBES: u32 = 4096;

/// Ids below this are reserved for the syscall tracepoints, whose programs have no cookie.
pub const FIRST_UPROBE_ID: u32 = 16;

pub const PROBE_MMAP: u32 = 0;
pub const PROBE_MUNMAP: u32 = 1;
pub const PROBE_MREMAP: u32 = 2;
pub const PROBE_BRK: u32 = 3;
pub const PROBE_MPROTECT: u32 = 4;
pub const PROBE_MADVISE: u32 = 5;

/// The syscall probes: (id, syscall name). The name is also the tracepoint's
/// `syscalls:sys_{enter,exit}_<name>` suffix and the `func` value of its rows.
pub const SYSCALL_PROBES: [(u32, &str); 6] = [
    (PROBE_MMAP, "mmap"),
    (PROBE_MUNMAP, "munmap"),
    (PROBE_MREMAP, "mremap"),
    (PROBE_BRK, "brk"),
    (PROBE_MPROTECT, "mprotect"),
    (PROBE_MADVISE, "madvise"),
];

/// `ProbeConfig::stack`: capture the user stack (frame-pointer walk) at this probe.
pub const STACK_CAPTURE: u8 = 1;
/// `ProbeConfig::stack`: also read the return address at `[rsp]`. At a function's entry, before
/// its frame exists, the kernel's frame-pointer walk skips the immediate caller; the kernel
/// repairs that itself only when the probed instruction is `push %rbp` or `endbr64`.
pub const STACK_CALLER_FIXUP: u8 = 2;
/// `ProbeConfig::stack`: the process runs a CPython whose frame chain can be read (its
/// `PyStackConfig` is in `PYTHON_STACKS`): also walk the Python stack. Set only on the probes
/// of such a process, so native-only processes never look the configuration up.
pub const STACK_PYTHON: u8 = 4;
/// `ProbeConfig::stack`: walk the frame-pointer chain in the eBPF program instead of asking the
/// kernel (`bpf_get_stack`), which costs ~150 ns a frame here. Only for code that no uretprobe
/// can have on its stack (Go): the kernel's walk replaces uretprobe trampoline addresses with the
/// real return addresses, this one does not.
pub const STACK_OWN_WALK: u8 = 8;

/// `ProbeConfig::runtime`: at the entry, save the values at `out` and `nmemb` in the thread's
/// stash slots `stash_base` and `stash_base + 1`, for the return probe.
pub const RUNTIME_STASH: u8 = 1;
/// `ProbeConfig::runtime`: the entry probe only stashes; the return probe writes the row.
pub const RUNTIME_NO_EMIT: u8 = 2;
/// `ProbeConfig::runtime`: at the return, `values[0..2]` are read *through* the stashed
/// pointers (8 bytes each, 0 for a NULL pointer) instead of being the stashed values.
pub const RUNTIME_DEREF_STASH: u8 = 4;

/// Where a probe reads a value: a System V argument slot, or a named register (Go's
/// register ABI, USDT argument specs).
pub mod loc {
    /// System V arguments 0..5: rdi, rsi, rdx, rcx, r8, r9.
    pub const ARG0: u8 = 0;
    pub const ARG1: u8 = 1;
    pub const ARG2: u8 = 2;
    pub const ARG3: u8 = 3;
    pub const ARG4: u8 = 4;
    pub const ARG5: u8 = 5;
    pub const RAX: u8 = 16;
    pub const RBX: u8 = 17;
    pub const RCX: u8 = 18;
    pub const RDX: u8 = 19;
    pub const RSI: u8 = 20;
    pub const RDI: u8 = 21;
    pub const R8: u8 = 22;
    pub const R9: u8 = 23;
    pub const R10: u8 = 24;
    pub const R11: u8 = 25;
    pub const R12: u8 = 26;
    pub const R13: u8 = 27;
    pub const R14: u8 = 28;
    pub const R15: u8 = 29;
    pub const RBP: u8 = 30;
    pub const RSP: u8 = 31;
    /// Not read.
    pub const NONE: u8 = 255;
}

/// Per-probe instructions for the generic programs, indexed by probe id in the `PROBES` map.
///
/// Allocation probes (`alloc_enter`): the row's size is `size` (× `nmemb` when set), `ptr` is
/// realloc's input, `align` the alignment, `out` posix_memalign's `void **`. Release probes
/// (`release`): `ptr` is the freed pointer; `outer` marks functions (operator delete,
/// `_PyObject_Free`) whose own inner free of the same pointer is folded into them.
/// Runtime-event probes (`runtime_event`): `kind` is the event, and up to three values are read
/// from user memory at `reads[i]` (absolute addresses, `read_sizes[i]` bytes) or, for USDT
/// arguments, from `arg` (a register, optionally dereferenced at `arg_offset`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// An `EventKind` discriminant.
    pub kind: u32,
    pub size: u8,
    pub nmemb: u8,
    pub ptr: u8,
    pub align: u8,
    pub out: u8,
    /// Go: the register holding the `*_type` argument.
    pub type_reg: u8,
    /// `1` for an outer release function (see above).
    pub outer: u8,
    /// USDT argument location (`loc`), dereferenced at `arg_offset` when `arg_deref` is 1.
    pub arg: u8,
    pub arg_deref: u8,
    pub arg_size: u8,
    /// `STACK_*` bits: capture the user stack at this probe.
    pub stack: u8,
    /// `RUNTIME_*` bits for the runtime-event programs.
    pub runtime: u8,
    pub arg_offset: i32,
    pub reads: [u64; 3],
    pub read_sizes: [u8; 3],
    /// First of the two per-thread stash slots this probe uses (0 or 2).
    pub stash_base: u8,
    pub _pad2: [u8; 4],
    /// Go allocator entry: the address it returns for size 0 (`&runtime.zerobase`), when
    /// that return is recorded at the entry instead of by a probe on its RET; 0 otherwise.
    pub go_zero_result: u64,
    /// Go result probes that also read the call's arguments (`go_alloc_site`): the size is
    /// register `size` itself when this is [`NO_SLOT`], else the 8 bytes at `size` + this.
    pub go_size_slot: i32,
    /// The same for the type pointer and register `type_reg`.
    pub go_type_slot: i32,
}

/// `ProbeConfig::go_size_slot`, `go_type_slot`: the value is the register's.
pub const NO_SLOT: i32 = -1;

impl ProbeConfig {
    pub const EMPTY: ProbeConfig = ProbeConfig {
        kind: 0,
        size: loc::NONE,
        nmemb: loc::NONE,
        ptr: loc::NONE,
        align: loc::NONE,
        out: loc::NONE,
        type_reg: loc::NONE,
        outer: 0,
        arg: loc::NONE,
        arg_deref: 0,
        arg_size: 0,
        stack: 0,
        runtime: 0,
        arg_offset: 0,
        reads: [0; 3],
        read_sizes: [0; 3],
        stash_base: 0,
        _pad2: [0; 4],
        go_zero_result: 0,
        go_size_slot: NO_SLOT,
        go_type_slot: NO_SLOT,
    };
}

const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 72);

#[cfg(feature = "user")]
// SAFETY: `ProbeConfig` is `#[repr(C)]`, integers only, padding explicit.
unsafe impl aya::Pod for ProbeConfig {}
