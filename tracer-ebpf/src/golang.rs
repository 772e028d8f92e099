//! Go's allocator: entry probes after the stack check (so a morestack restart does not fire
//! twice) and result probes, each on an instruction the kernel emulates where the result is
//! already decided (a register or a frame slot, named by the probe's cookie), or on a RET
//! (RAX). An allocator whose every way out allows it has no entry probe: its result probes
//! also read the size and type (`go_alloc_site`), or an earlier probe on the same way out
//! does (`go_alloc_enter` placed there). No uretprobe is ever placed on Go code: Go copies
//! goroutine stacks, and a hijacked return address on one would crash the program.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{
    alloc::AllocEvent,
    counter::Counter,
    event::EventKind,
    golang::{GoCall, GoKey, GoStackBounds, result_in_helper, result_offset, result_register},
    probe::{NO_SLOT, ProbeConfig, STACK_CAPTURE, loc},
};

use crate::{
    emit::{bump, emit, header},
    maps::{GO_CALLS, is_traced},
    regs::{full_cookie, read, read_user_u64, traced_hit},
    stack::{NO_PICK, Pick, capture_go_stack, capture_go_stack_last_bounds, read_stack_bounds},
};

fn key(ctx: &ProbeContext, pid_tgid: u64) -> GoKey {
    GoKey {
        tgid: pid_tgid >> 32,
        g: read(ctx, loc::R14).unwrap_or(0),
    }
}

/// Entry of `runtime.mallocgc` (Go ≤ 1.25) or an allocator leaf (Go 1.26+).
#[uprobe]
pub fn go_alloc_enter(ctx: ProbeContext) -> u32 {
    let Some(hit) = traced_hit(&ctx) else {
        return 0;
    };
    let (pid_tgid, probe, cfg) = (hit.pid_tgid, hit.probe, hit.cfg);
    let key = key(&ctx, pid_tgid);
    let size = read(&ctx, cfg.size).unwrap_or(0);
    // A size-0 call whose return is not probed: recorded here, with the constant it returns.
    let zero_here = size == 0 && cfg.go_zero_result != 0;
    // A goroutine keeps its entry between calls (depth 0: idle), so most calls update it in
    // place instead of inserting and deleting a map element each time.
    let entry = GO_CALLS.get_ptr_mut(key);
    if let Some(call) = entry {
        // SAFETY: map value pointer from a successful lookup.
        let call = unsafe { &mut *call };
        if call.depth > 0 {
            // A leaf called by another probed allocator: the outer call writes the row.
            if !zero_here {
                call.depth += 1;
            }
            bump(Counter::Nested);
            return 0;
        }
    }
    let mut bounds = match entry {
        // SAFETY: as above.
        Some(call) => unsafe { (*call).bounds },
        None => GoStackBounds::default(),
    };
    let mut nothing = Pick::NONE;
    let stack = capture_go_stack(&ctx, cfg.stack, key.g, &mut bounds, &mut nothing);
    let type_ptr = read(&ctx, cfg.type_reg).unwrap_or(0);
    if zero_here {
        emit(AllocEvent {
            header: header(EventKind::Alloc as u32, probe, pid_tgid, 0),
            addr: cfg.go_zero_result,
            size,
            arg: type_ptr,
            stack,
        });
        return 0;
    }
    let call = GoCall {
        depth: 1,
        probe,
        size,
        type_ptr,
        stack,
        bounds,
    };
    match entry {
        // SAFETY: as above; the goroutine runs on one CPU at a time, so nothing else writes it.
        Some(slot) => unsafe { *slot = call },
        None => {
            if GO_CALLS.insert(key, call, 0).is_err() {
                bump(Counter::GoMapFull);
            }
        }
    }
    0
}

/// A result probe of a Go allocator: the result is where the cookie says.
#[uprobe]
pub fn go_alloc_ret(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced(pid_tgid) {
        return 0;
    }
    let key = key(&ctx, pid_tgid);
    let Some(call) = GO_CALLS.get_ptr_mut(key) else {
        bump(Counter::GoReturnWithoutEntry);
        return 0;
    };
    // SAFETY: map value pointer from a successful lookup.
    let call = unsafe { &mut *call };
    if call.depth == 0 {
        bump(Counter::GoReturnWithoutEntry);
        return 0;
    }
    if call.depth > 1 {
        call.depth -= 1;
        return 0;
    }
    let (probe, size, type_ptr) = (call.probe, call.size, call.type_ptr);
    let stack = call.stack;
    // Idle until the goroutine's next allocation (kept, not deleted: see the entry).
    call.depth = 0;
    let place = full_cookie(&ctx);
    let addr = read_result(&ctx, place);
    if result_in_helper(place) {
        bump(Counter::GoSlowPathResult);
    }
    let head = header(EventKind::Alloc as u32, probe, pid_tgid, 0);
    emit(AllocEvent {
        header: head,
        addr,
        size,
        arg: type_ptr,
        stack,
    });
    0
}

/// The result where cookie `place` says it is.
#[inline(always)]
fn read_result(ctx: &ProbeContext, place: u64) -> u64 {
    let base = read(ctx, result_register(place)).unwrap_or(0);
    match result_offset(place) {
        None => base,
        Some(offset) => read_user_u64(base.wrapping_add(u64::from(offset))).unwrap_or(0),
    }
}

/// Register `register`, or the 8 bytes at it + `slot` (unless [`NO_SLOT`]); 0 for `loc::NONE`.
#[inline(always)]
fn read_arg(ctx: &ProbeContext, register: u8, slot: i32) -> u64 {
    let Some(base) = read(ctx, register) else {
        return 0;
    };
    if slot == NO_SLOT {
        base
    } else {
        read_user_u64(base.wrapping_add(slot as u64)).unwrap_or(0)
    }
}

/// The call's size and type pointer at a `go_alloc_site` probe: one read of user memory for
/// both when they are neighbouring slots (Go spills `size` and `typ` side by side), since a
/// read costs ~170 ns here whatever its size (docs/benchmarks.md, "Go's stacks").
#[inline(always)]
fn read_args(ctx: &ProbeContext, cfg: &ProbeConfig) -> (u64, u64) {
    let (size_slot, type_slot) = (cfg.go_size_slot, cfg.go_type_slot);
    if size_slot != NO_SLOT
        && cfg.size == cfg.type_reg
        && type_slot == size_slot.wrapping_add(8)
        && let Some(base) = read(ctx, cfg.size)
    {
        // SAFETY: reads user memory through the helper, which handles faults.
        let pair =
            unsafe { bpf_probe_read_user(base.wrapping_add(size_slot as u64) as *const [u64; 2]) }
                .unwrap_or([0; 2]);
        return (pair[0], pair[1]);
    }
    (
        read_arg(ctx, cfg.size, size_slot),
        read_arg(ctx, cfg.type_reg, type_slot),
    )
}

/// A result probe of an allocator without an entry probe: the size and type are where the
/// configuration says (registers, the caller's argument spill slots, or size 0 for a size-0
/// return), the result where the cookie says; one breakpoint writes the row.
#[uprobe]
pub fn go_alloc_site(ctx: ProbeContext) -> u32 {
    let Some(hit) = traced_hit(&ctx) else {
        return 0;
    };
    let (pid_tgid, probe, cfg) = (hit.pid_tgid, hit.probe, hit.cfg);
    let addr = read_result(&ctx, hit.cookie);
    let (size, type_ptr, stack) = if cfg.stack & STACK_CAPTURE == 0 {
        let (size, type_ptr) = read_args(&ctx, cfg);
        (size, type_ptr, 0)
    } else {
        // The walk copies the stack from RSP first: the spill slots are usually in that copy.
        let mut pick = Pick {
            offsets: [
                rsp_slot(cfg.size, cfg.go_size_slot),
                rsp_slot(cfg.type_reg, cfg.go_type_slot),
            ],
            ..Pick::NONE
        };
        let key = key(&ctx, pid_tgid);
        let stack = capture_go_stack_last_bounds(
            &ctx,
            cfg.stack,
            |sp| goroutine_bounds(key, sp),
            &mut pick,
        );
        let (size, type_ptr) = match pick.found {
            3 => (pick.values[0], pick.values[1]),
            1 => (
                pick.values[0],
                read_arg(&ctx, cfg.type_reg, cfg.go_type_slot),
            ),
            2 => (read_arg(&ctx, cfg.size, cfg.go_size_slot), pick.values[1]),
            _ => read_args(&ctx, cfg),
        };
        (size, type_ptr, stack)
    };
    emit(AllocEvent {
        header: header(EventKind::Alloc as u32, probe, pid_tgid, 0),
        addr,
        size,
        arg: type_ptr,
        stack,
    });
    0
}

/// The byte offset from RSP of a value at `register` + `slot`, or [`NO_PICK`] for a register.
#[inline(always)]
fn rsp_slot(register: u8, slot: i32) -> u64 {
    if register == loc::RSP && slot >= 0 {
        slot as u64
    } else {
        NO_PICK
    }
}

/// The bounds of goroutine `key`'s stack, which holds `sp`: kept in its (idle) `GO_CALLS` entry
/// between calls, as the entry probe keeps them, and read again from its `g` when the stack
/// moved.
#[inline(always)]
fn goroutine_bounds(key: GoKey, sp: u64) -> GoStackBounds {
    match GO_CALLS.get_ptr_mut(key) {
        Some(call) => {
            // SAFETY: map value pointer from a successful lookup; the goroutine runs on one CPU
            // at a time, so nothing else writes it.
            let bounds = unsafe { &mut (*call).bounds };
            if !bounds.holds(sp) {
                *bounds = read_stack_bounds(key.g);
            }
            *bounds
        }
        None => {
            let idle = GoCall {
                bounds: read_stack_bounds(key.g),
                ..GoCall::default()
            };
            if GO_CALLS.insert(key, idle, 0).is_err() {
                bump(Counter::GoMapFull);
            }
            idle.bounds
        }
    }
}
