//! Following the process tree: scheduler and syscall tracepoints that keep `TARGETS` current
//! and hold a traced process whose new code must be probed before it runs.
//!
//! - `task:task_newtask` fires in the parent, before the child first runs: a traced process's
//!   new process (not a new thread) inherits its flags, so the uprobes it shares with its
//!   parent (attached per file, for every process) fire from its first instruction.
//! - `sched:sched_process_exec`: a held process is stopped (SIGSTOP, taken before it returns
//!   to user mode, so before the new image runs a single instruction) until user space has
//!   probed the new executable and its loader and sends SIGCONT.
//! - `syscalls:sys_{enter,exit}_mmap`: likewise after each mmap of an executable file
//!   (the loader mapping libraries, dlopen), so a library is probed before its code runs.
//! - `sched:sched_process_exit` (last thread), `syscalls:sys_enter_exit_group` and
//!   `signal:signal_deliver` give the end and the exit status; the entry is cleared at exit,
//!   so a reused pid is never traced by mistake.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_send_signal},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    event::EventKind,
    process::{ProcessChange, ProcessEvent, flags},
};

use crate::{
    emit::{emit, emit_now, header},
    maps::{HOLD_MMAPS, TARGETS, target_flags},
};

const SIGSTOP: u32 = 19;
const CLONE_THREAD: u64 = 0x0001_0000;
const PROT_EXEC: u64 = 4;

/// Offsets in the tracepoint records (tracefs `format` files of Linux 6.x).
const NEWTASK_PID: usize = 8;
const NEWTASK_CLONE_FLAGS: usize = 32;
const EXIT_GROUP_DEAD: usize = 32;
const EXIT_GROUP_CODE: usize = 16;
const MMAP_PROT: usize = 32;
const MMAP_FD: usize = 48;
const MMAP_RET: usize = 16;
const DELIVER_SIG: usize = 8;
const DELIVER_HANDLER: usize = 24;

fn read<T: Copy + Default>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: the offsets are inside the fixed-size tracepoint records listed above.
    unsafe { ctx.read_at::<T>(offset) }.unwrap_or_default()
}

fn set_flags(tgid: u32, value: u32) {
    if let Some(slot) = TARGETS.get_ptr_mut(tgid) {
        // SAFETY: an element of a live array map; a process's entry is written by its own
        // threads or by its parent before it runs.
        unsafe { *slot = value };
    }
}

fn event(
    pid_tgid: u64,
    change: ProcessChange,
    other: u32,
    status: u32,
    held: bool,
) -> ProcessEvent {
    ProcessEvent {
        header: header(EventKind::Process as u32, 0, pid_tgid, 0),
        change: change as u32,
        other,
        status,
        held: u32::from(held),
    }
}

/// Stops the current process until user space resumes it; says so in the record.
fn hold(pid_tgid: u64, change: ProcessChange, other: u32) {
    // SAFETY: a helper call with a constant signal number; it signals the current process.
    let sent = unsafe { bpf_send_signal(SIGSTOP) } == 0;
    emit_now(event(pid_tgid, change, other, 0, sent));
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let parent = bpf_get_current_pid_tgid();
    let bits = target_flags(parent);
    if bits & flags::FOLLOW == 0 {
        return 0;
    }
    if read::<u64>(&ctx, NEWTASK_CLONE_FLAGS) & CLONE_THREAD != 0 {
        return 0;
    }
    let child: i32 = read(&ctx, NEWTASK_PID);
    if child <= 0 {
        return 0;
    }
    let child = child as u32;
    set_flags(child, bits & flags::INHERITED);
    let child_tgid = (u64::from(child) << 32) | u64::from(child);
    emit(event(
        child_tgid,
        ProcessChange::Fork,
        (parent >> 32) as u32,
        0,
        false,
    ));
    0
}

#[tracepoint]
pub fn process_exec(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let bits = target_flags(pid_tgid);
    if bits & flags::TRACED == 0 {
        return 0;
    }
    // An exit code or signal seen before the exec belongs to the old image's threads.
    set_flags((pid_tgid >> 32) as u32, bits & flags::INHERITED);
    if bits & flags::HOLD != 0 {
        hold(pid_tgid, ProcessChange::Exec, pid_tgid as u32);
    } else {
        emit_now(event(
            pid_tgid,
            ProcessChange::Exec,
            pid_tgid as u32,
            0,
            false,
        ));
    }
    0
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let bits = target_flags(pid_tgid);
    if bits & flags::TRACED == 0 || read::<u8>(&ctx, EXIT_GROUP_DEAD) == 0 {
        return 0;
    }
    set_flags((pid_tgid >> 32) as u32, 0);
    emit_now(event(pid_tgid, ProcessChange::Exit, 0, bits, false));
    0
}

#[tracepoint]
pub fn exit_group(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let bits = target_flags(pid_tgid);
    if bits & flags::TRACED == 0 {
        return 0;
    }
    let code = read::<u64>(&ctx, EXIT_GROUP_CODE) as u32 & 0xff;
    let keep = bits & (flags::INHERITED | flags::SIGNALED | (0xff << flags::SIGNAL_SHIFT));
    set_flags(
        (pid_tgid >> 32) as u32,
        keep | flags::EXITED | (code << flags::CODE_SHIFT),
    );
    0
}

/// Signals whose default action ends the process (with a core dump or not): all but SIGCHLD,
/// SIGCONT, SIGURG, SIGWINCH and the stop signals.
fn kills_by_default(sig: i32) -> bool {
    matches!(sig, 1..=16 | 24..=27 | 29..=31 | 32..=64)
}

#[tracepoint]
pub fn signal_deliver(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let bits = target_flags(pid_tgid);
    if bits & flags::TRACED == 0 {
        return 0;
    }
    let sig: i32 = read(&ctx, DELIVER_SIG);
    // SIG_DFL is 0: the default action applies.
    if read::<u64>(&ctx, DELIVER_HANDLER) != 0 || !kills_by_default(sig) {
        return 0;
    }
    let keep = bits & !(0xff << flags::SIGNAL_SHIFT);
    set_flags(
        (pid_tgid >> 32) as u32,
        keep | flags::SIGNALED | ((sig as u32 & 0xff) << flags::SIGNAL_SHIFT),
    );
    0
}

#[tracepoint]
pub fn hold_mmap_enter(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if target_flags(pid_tgid) & flags::HOLD == 0 {
        return 0;
    }
    let prot: u64 = read(&ctx, MMAP_PROT);
    let fd = read::<u64>(&ctx, MMAP_FD) as i32;
    if prot & PROT_EXEC == 0 || fd < 0 {
        return 0;
    }
    let _ = HOLD_MMAPS.insert(&pid_tgid, &1, 0);
    0
}

#[tracepoint]
pub fn hold_mmap_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is only tested for presence.
    if unsafe { HOLD_MMAPS.get(&pid_tgid) }.is_none() {
        return 0;
    }
    let _ = HOLD_MMAPS.remove(&pid_tgid);
    let ret: i64 = read(&ctx, MMAP_RET);
    if ret < 0 && ret > -4096 {
        return 0;
    }
    hold(pid_tgid, ProcessChange::Mapped, 0);
    0
}
