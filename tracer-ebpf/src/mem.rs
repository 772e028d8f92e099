//! Tracepoints on the address-space syscalls (`syscalls:sys_{enter,exit}_{mmap,munmap,mremap,
//! brk,mprotect,madvise}`). One enter and one exit program serve all six: the tracepoint record
//! carries the syscall number.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{
    counter::Counter,
    event::EventKind,
    mem::{MapEvent, PendingSyscall},
    probe::{PROBE_BRK, PROBE_MADVISE, PROBE_MMAP, PROBE_MPROTECT, PROBE_MREMAP, PROBE_MUNMAP},
};

use crate::{
    emit::{bump, emit, header},
    maps::{SYSCALLS, is_traced},
};

// x86-64 syscall numbers.
const NR_MMAP: u64 = 9;
const NR_MPROTECT: u64 = 10;
const NR_MUNMAP: u64 = 11;
const NR_BRK: u64 = 12;
const NR_MREMAP: u64 = 25;
const NR_MADVISE: u64 = 28;

/// Offsets in the `syscalls:sys_enter_*` / `sys_exit_*` records (tracefs `format` files).
const OFF_NR: usize = 8;
const OFF_ARGS: usize = 16;
const OFF_RET: usize = 16;

fn read_u64(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: the offsets are inside the fixed-size syscall tracepoint record.
    unsafe { ctx.read_at::<u64>(offset) }.unwrap_or(0)
}

fn syscall_nr(ctx: &TracePointContext) -> u64 {
    // SAFETY: as in `read_u64`; `__syscall_nr` is an int.
    unsafe { ctx.read_at::<i32>(OFF_NR) }.map_or(u64::MAX, |nr| nr as u64)
}

fn is_target(pid_tgid: u64) -> bool {
    is_traced(pid_tgid)
}

fn kind_and_probe(nr: u64) -> Option<(EventKind, u32)> {
    Some(match nr {
        NR_MMAP => (EventKind::Mmap, PROBE_MMAP),
        NR_MUNMAP => (EventKind::Munmap, PROBE_MUNMAP),
        NR_MREMAP => (EventKind::Mremap, PROBE_MREMAP),
        NR_BRK => (EventKind::Brk, PROBE_BRK),
        NR_MPROTECT => (EventKind::Mprotect, PROBE_MPROTECT),
        NR_MADVISE => (EventKind::Madvise, PROBE_MADVISE),
        _ => return None,
    })
}

#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let nr = syscall_nr(&ctx);
    let Some((kind, _)) = kind_and_probe(nr) else {
        return 0;
    };
    let a = |i: usize| read_u64(&ctx, OFF_ARGS + 8 * i);
    let pending = PendingSyscall {
        kind: kind as u32,
        prot: if matches!(kind, EventKind::Mmap | EventKind::Mprotect) {
            a(2) as u32
        } else {
            0
        },
        a0: a(0),
        a1: a(1),
        a2: a(2),
        a3: a(3),
        flags: match kind {
            EventKind::Mmap | EventKind::Mremap => a(3) as u32,
            EventKind::Madvise => a(2) as u32,
            _ => 0,
        },
        fd: if kind == EventKind::Mmap {
            a(4) as i32
        } else {
            -1
        },
    };
    if SYSCALLS.insert(pid_tgid, pending, 0).is_err() {
        bump(Counter::ThreadMapFull);
    }
    0
}

#[tracepoint]
pub fn sys_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let Some((_, probe)) = kind_and_probe(syscall_nr(&ctx)) else {
        return 0;
    };
    let Some(pending) = SYSCALLS.get_ptr(pid_tgid) else {
        bump(Counter::SyscallWithoutEntry);
        return 0;
    };
    // SAFETY: map value pointer from a successful lookup, copied before the entry is removed.
    let p = unsafe { *pending };
    let _ = SYSCALLS.remove(pid_tgid);
    let ret = read_u64(&ctx, OFF_RET) as i64;
    let kind = EventKind::from_u32(p.kind).unwrap_or(EventKind::Mmap);
    let (addr, len, old_addr, old_len) = match kind {
        EventKind::Mmap => (ret as u64, p.a1, p.a0, 0),
        EventKind::Mremap => (ret as u64, p.a2, p.a0, p.a1),
        EventKind::Brk => (ret as u64, 0, p.a0, 0),
        _ => (p.a0, p.a1, 0, 0),
    };
    emit(MapEvent {
        header: header(p.kind, probe, pid_tgid, 0),
        addr,
        len,
        old_addr,
        old_len,
        ret,
        prot: p.prot,
        flags: p.flags,
        fd: p.fd,
        _pad: 0,
    });
    0
}
