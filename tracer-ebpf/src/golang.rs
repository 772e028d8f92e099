//! Go's allocator: entry probes after the stack check (so a morestack restart does not fire
//! twice) and result probes, each on an instruction the kernel emulates where the result is
//! already decided (a register or a frame slot, named by the probe's cookie), or on a RET
//! (RAX). No uretprobe is ever placed on Go code: Go copies goroutine stacks, and a hijacked
//! return address on one would crash the program.

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
    probe::loc,
};

use crate::{
    emit::{bump, emit, header},
    maps::{GO_CALLS, is_traced},
    regs::{full_cookie, read, traced_hit},
    stack::capture_go_stack,
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
    let stack = capture_go_stack(&ctx, cfg.stack, key.g, &mut bounds);
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
    let base = read(&ctx, result_register(place)).unwrap_or(0);
    let addr = match result_offset(place) {
        None => base,
        // SAFETY: reads user memory through the helper, which handles faults.
        Some(offset) => {
            unsafe { bpf_probe_read_user(base.wrapping_add(u64::from(offset)) as *const u64) }
                .unwrap_or(0)
        }
    };
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
