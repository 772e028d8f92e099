//! Language-runtime events (GC cycles, stop-the-world pauses) from uprobes and USDT probes:
//! the probe's configuration says which event it is and what to read.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{counter::Counter, gc::RuntimeEvent, probe::ProbeConfig};

use crate::{
    emit::{bump, emit, header},
    regs::{config, cookie, read},
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

/// A runtime event at a function entry or USDT site.
#[uprobe]
pub fn runtime_event(ctx: ProbeContext) -> u32 {
    let probe = cookie(&ctx);
    let Some(cfg) = config(probe) else {
        bump(Counter::NoConfig);
        return 0;
    };
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
    let probe = cookie(&ctx);
    let Some(cfg) = config(probe) else {
        bump(Counter::NoConfig);
        return 0;
    };
    let ret: u64 = ctx.ret();
    emit(event(cfg, probe, ret));
    0
}
