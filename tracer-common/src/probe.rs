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
