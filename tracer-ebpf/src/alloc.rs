//! Uprobes on C-ABI allocator functions: glibc's malloc family, C++ operator new/delete,
//! CPython's allocator domains.
//!
//! Allocation functions get an entry probe (arguments) and a return probe (the address) on the
//! same instruction, so both share one breakpoint. Nested allocator calls on a thread
//! (operator new → malloc, reallocarray → realloc) are folded into the outermost one: only the
//! outermost call's return writes a row. Frees need only an entry probe.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use tracer_common::{
    alloc::AllocEvent,
    counter::Counter,
    event::{EventKind, FLAG_FAILED},
    thread::{RESULT_IN_RAX, RESULT_THROUGH_POINTER, ThreadState},
};

use crate::{
    emit::{bump, emit, header},
    maps::{THREADS, is_traced},
    regs::{Hit, read, stack_pointer, traced_hit},
    stack::capture_stack,
};

/// Calls nested deeper than this on one thread are folded without tracking.
const MAX_DEPTH: u32 = 16;

/// What an entry probe learned about the call from its arguments.
struct Call {
    kind: EventKind,
    size: u64,
    align: u64,
    old_ptr: u64,
    out_ptr: u64,
    result: u32,
    /// `STACK_*` bits of the probe.
    stack: u8,
}

/// The thread's state, created on first use.
fn thread_state() -> Option<*mut ThreadState> {
    let state = THREADS.current(true);
    if state.is_none() {
        bump(Counter::ThreadMapFull);
    }
    state
}

fn enter(ctx: &ProbeContext, probe: u32, call: Call) -> u32 {
    let Some(state) = thread_state() else {
        return 0;
    };
    // SAFETY: map value pointer from a successful lookup; only this thread uses this entry.
    let state = unsafe { &mut *state };
    let sp = stack_pointer(ctx);
    if state.depth > 0 && sp > state.outer_sp {
        // The stack is above the outer call's frame: that call left without returning.
        bump(Counter::Unwound);
        state.depth = 0;
    }
    if state.depth == 0 {
        state.probe = probe;
        state.outer_sp = sp;
        state.kind = call.kind as u32;
        state.size = call.size;
        state.align = call.align;
        state.old_ptr = call.old_ptr;
        state.out_ptr = call.out_ptr;
        state.result = call.result;
        // Only the outermost call's stack is captured (and paid for).
        state.stack = capture_stack(ctx, call.stack, &mut state.scratch);
    } else {
        bump(Counter::Nested);
    }
    if state.depth < MAX_DEPTH {
        state.depth += 1;
    } else {
        bump(Counter::DepthOverflow);
    }
    0
}

/// Shared return probe of every allocation function: writes the row of the outermost call.
#[uretprobe]
pub fn alloc_return(ctx: RetProbeContext) -> u32 {
    // Untraced processes never enter a call (`alloc_enter` filters them), so the traced check
    // is only paid on the way out of a call that has no entry.
    let Some(state) = THREADS.current(false) else {
        if is_traced(bpf_get_current_pid_tgid()) {
            bump(Counter::ReturnWithoutEntry);
        }
        return 0;
    };
    // SAFETY: as in `enter`.
    let state = unsafe { &mut *state };
    if state.depth == 0 {
        if is_traced(bpf_get_current_pid_tgid()) {
            bump(Counter::ReturnWithoutEntry);
        }
        return 0;
    }
    state.depth -= 1;
    if state.depth > 0 {
        return 0;
    }
    let ret: u64 = ctx.ret();
    let addr = if state.result == RESULT_THROUGH_POINTER {
        // posix_memalign returns 0 on success and stores the block through `memptr`.
        if ret == 0 {
            // SAFETY: reads user memory through the helper, which handles faults.
            unsafe { bpf_probe_read_user(state.out_ptr as *const u64) }.unwrap_or(0)
        } else {
            0
        }
    } else {
        ret
    };
    let kind = state.kind;
    let arg = if kind == EventKind::Realloc as u32 {
        state.old_ptr
    } else {
        state.align
    };
    let flags = if addr == 0 { FLAG_FAILED } else { 0 };
    let head = header(kind, state.probe, bpf_get_current_pid_tgid(), flags);

    emit(AllocEvent {
        header: head,
        addr,
        size: state.size,
        arg,
        stack: state.stack,
    });
    0
}

/// Entry of every native and CPython allocation function; the argument layout comes from the
/// probe's `ProbeConfig` (malloc(size), calloc(nmemb, size), realloc(ptr, size),
/// posix_memalign(memptr, alignment, size), `_PyObject_Malloc(ctx, size)`, ...).
#[uprobe]
pub fn alloc_enter(ctx: ProbeContext) -> u32 {
    let Some(Hit { probe, cfg, .. }) = traced_hit(&ctx) else {
        return 0;
    };
    let mut size = read(&ctx, cfg.size).unwrap_or(0);
    if let Some(nmemb) = read(&ctx, cfg.nmemb) {
        size = size.wrapping_mul(nmemb);
    }
    let out_ptr = read(&ctx, cfg.out);
    let call = Call {
        kind: if cfg.kind == EventKind::Realloc as u32 {
            EventKind::Realloc
        } else {
            EventKind::Alloc
        },
        size,
        align: read(&ctx, cfg.align).unwrap_or(0),
        old_ptr: read(&ctx, cfg.ptr).unwrap_or(0),
        out_ptr: out_ptr.unwrap_or(0),
        result: if out_ptr.is_some() {
            RESULT_THROUGH_POINTER
        } else {
            RESULT_IN_RAX
        },
        stack: cfg.stack,
    };
    enter(&ctx, probe, call)
}

/// Entry of every release function (free, operator delete, `_PyObject_Free`, ...).
#[uprobe]
pub fn release(ctx: ProbeContext) -> u32 {
    let Some(Hit { probe, cfg, .. }) = traced_hit(&ctx) else {
        return 0;
    };
    let ptr = read(&ctx, cfg.ptr).unwrap_or(0);
    release_ptr(&ctx, probe, ptr, cfg.outer != 0)
}

fn release_ptr(ctx: &ProbeContext, probe: u32, ptr: u64, is_delete: bool) -> u32 {
    if ptr == 0 {
        bump(Counter::FreeNull);
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let sp = stack_pointer(ctx);
    let state = if is_delete {
        thread_state()
    } else {
        THREADS.current(false)
    };
    if let Some(state) = state {
        // SAFETY: as in `enter`.
        let state = unsafe { &mut *state };
        if state.depth > 0 {
            if sp > state.outer_sp {
                bump(Counter::Unwound);
                state.depth = 0;
            } else {
                // A free made by an allocator function in progress (realloc(p, 0) frees p):
                // the outer call's row accounts for it.
                bump(Counter::Nested);
                return 0;
            }
        }
        if state.delete_ptr == ptr && sp <= state.delete_sp {
            // The free (or inner delete) that an operator delete in progress makes.
            if !is_delete {
                state.delete_ptr = 0;
            }
            bump(Counter::Nested);
            return 0;
        }
        if is_delete {
            state.delete_ptr = ptr;
            state.delete_sp = sp;
        }
    }
    emit(AllocEvent {
        header: header(EventKind::Free as u32, probe, pid_tgid, 0),
        addr: ptr,
        size: 0,
        arg: 0,
        stack: 0,
    });
    0
}
