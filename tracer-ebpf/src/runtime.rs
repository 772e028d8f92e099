//! Language-runtime events (GC cycles, stop-the-world pauses) from uprobes and USDT probes:
//! the probe's configuration says which event it is and what to read.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    counter::Counter,
    event::FLAG_STATS,
    gc::{MAX_STAT_READS, RuntimeEvent, StatsEvent},
    probe::{ProbeConfig, RUNTIME_DEREF_STASH, RUNTIME_NO_EMIT, RUNTIME_STASH},
};

use crate::{
    emit::{bump, emit, header},
    maps::{STAT_READS, THREADS},
    regs::{Hit, read, traced_hit},
};

fn read_user(addr: u64, size: u8) -> u64 {
    if addr == 0 {
        return 0;
    }
    // SAFETY: reads user memory through the helper, which handles faults.
    let value = unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0);
    match size {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

fn event(cfg: &ProbeConfig, probe: u32, arg: u64) -> RuntimeEvent {
    RuntimeEvent {
        header: header(cfg.kind, probe, bpf_get_current_pid_tgid(), 0),
        values: [
            read_user(cfg.reads[0], cfg.read_sizes[0]),
            read_user(cfg.reads[1], cfg.read_sizes[1]),
            read_user(cfg.reads[2], cfg.read_sizes[2]),
        ],
        arg,
    }
}

/// Saves the probe's `out`/`nmemb` values in the thread's stash for its return probe.
fn stash(ctx: &ProbeContext, cfg: &ProbeConfig) {
    let Some(state) = THREADS.current(true) else {
        bump(Counter::ThreadMapFull);
        return;
    };
    // SAFETY: task-storage value of the current thread.
    let state = unsafe { &mut *state };
    let base = usize::from(cfg.stash_base & 2);
    state.stash[base] = read(ctx, cfg.out).unwrap_or(0);
    state.stash[base + 1] = read(ctx, cfg.nmemb).unwrap_or(0);
}

/// A runtime event at a function entry or USDT site.
#[uprobe]
pub fn runtime_event(ctx: ProbeContext) -> u32 {
    let Some(Hit { probe, cfg, .. }) = traced_hit(&ctx) else {
        return 0;
    };
    if cfg.runtime & RUNTIME_STASH != 0 {
        stash(&ctx, cfg);
    }
    if cfg.runtime & RUNTIME_NO_EMIT != 0 {
        return 0;
    }
    let mut arg = read(&ctx, cfg.arg).unwrap_or(0);
    if cfg.arg_deref != 0 {
        arg = read_user(arg.wrapping_add(cfg.arg_offset as i64 as u64), cfg.arg_size);
    } else if cfg.arg_size > 0 && cfg.arg_size < 8 {
        arg &= (1u64 << (u32::from(cfg.arg_size) * 8)) - 1;
    }
    emit(event(cfg, probe, arg));
    0
}

/// A runtime event at a C function's return (CPython's collection functions): `arg` is the
/// return value.
#[uretprobe]
pub fn runtime_return(ctx: RetProbeContext) -> u32 {
    let Some(Hit { probe, cfg, .. }) = traced_hit(&ctx) else {
        return 0;
    };
    let ret: u64 = ctx.ret();
    let mut ev = event(cfg, probe, ret);
    if cfg.runtime & RUNTIME_STASH != 0
        && let Some(state) = THREADS.current(false)
    {
        // SAFETY: task-storage value of the current thread.
        let state = unsafe { &*state };
        let base = usize::from(cfg.stash_base & 2);
        let (a, b) = (state.stash[base], state.stash[base + 1]);
        if cfg.runtime & RUNTIME_DEREF_STASH != 0 {
            // A NULL out-pointer (CPython's collection at shutdown) means "not reported".
            ev.values[0] = if a == 0 { u64::MAX } else { read_user(a, 8) };
            ev.values[1] = if b == 0 { u64::MAX } else { read_user(b, 8) };
        } else {
            ev.values[0] = a;
            ev.values[1] = b;
        }
    }
    emit(ev);
    0
}

/// A runtime event with many values (Go's cycle end: the runtime's heap and CPU accounting),
/// read from the addresses in the probe's `STAT_READS` entry.
#[uprobe]
pub fn runtime_stats(ctx: ProbeContext) -> u32 {
    let Some(hit) = traced_hit(&ctx) else {
        return 0;
    };
    let (pid_tgid, probe, cfg) = (hit.pid_tgid, hit.probe, hit.cfg);
    // SAFETY: the value is only read, and user space never changes it while attached.
    let Some(reads) = (unsafe { STAT_READS.get(&probe) }) else {
        bump(Counter::NoConfig);
        return 0;
    };
    let mut event = StatsEvent {
        header: header(cfg.kind, probe, pid_tgid, FLAG_STATS),
        values: [0; MAX_STAT_READS],
    };
    for i in 0..MAX_STAT_READS {
        if i as u32 >= reads.count {
            break;
        }
        event.values[i] = read_user(reads.addrs[i], reads.sizes[i]);
    }
    emit(event);
    0
}
