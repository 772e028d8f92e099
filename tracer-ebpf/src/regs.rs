//! Reading arguments and registers named by `tracer_common::probe::loc`.

use aya_ebpf::{EbpfContext, helpers::generated::bpf_get_attach_cookie, programs::ProbeContext};
use tracer_common::probe::{ProbeConfig, loc};

use crate::maps::{PROBES, is_traced};

/// A probe hit in a traced process, with the configuration user space stored for the probe.
pub struct Hit {
    pub pid_tgid: u64,
    pub probe: u32,
    pub cfg: &'static ProbeConfig,
}

/// The first step of every probe program: `None` when the hit is not to be recorded (the
/// process is not traced, or the probe has no configuration, which is counted).
#[inline(always)]
pub fn traced_hit<C: EbpfContext>(ctx: &C) -> Option<Hit> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    if !is_traced(pid_tgid) {
        return None;
    }
    let probe = cookie(ctx);
    let Some(cfg) = config(probe) else {
        crate::emit::bump(tracer_common::counter::Counter::NoConfig);
        return None;
    };
    Some(Hit {
        pid_tgid,
        probe,
        cfg,
    })
}

/// The probe id carried by the link's BPF cookie.
pub fn cookie<C: EbpfContext>(ctx: &C) -> u32 {
    full_cookie(ctx) as u32
}

/// The whole 64-bit cookie (Go result probes carry the result's place above the probe id).
pub fn full_cookie<C: EbpfContext>(ctx: &C) -> u64 {
    // SAFETY: the helper only reads the link's cookie; `ctx` is the program's context.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) }
}

/// The configuration user space stored for this probe.
pub fn config(probe: u32) -> Option<&'static ProbeConfig> {
    PROBES.get(probe)
}

/// The value at `location`, or `None` for `loc::NONE` (and unknown locations).
///
/// The registers are copied out first with constant offsets: a `match` that picks a field of
/// the context directly compiles to arithmetic on the context pointer, which the verifier
/// rejects ("dereference of modified ctx ptr").
#[inline(always)]
pub fn read(ctx: &ProbeContext, location: u8) -> Option<u64> {
    if location == loc::NONE {
        return None;
    }
    let r = ctx.regs;
    // SAFETY: `regs` points at the probed task's saved registers for this program run.
    // Volatile, so the compiler keeps one load per field instead of merging them into a load
    // through a computed pointer.
    let load = |field: *const u64| unsafe { core::ptr::read_volatile(field) };
    // SAFETY: field addresses inside the valid `pt_regs`.
    let (rdi, rsi, rdx, rcx, r8, r9) = unsafe {
        (
            load(&raw const (*r).rdi),
            load(&raw const (*r).rsi),
            load(&raw const (*r).rdx),
            load(&raw const (*r).rcx),
            load(&raw const (*r).r8),
            load(&raw const (*r).r9),
        )
    };
    // SAFETY: as above.
    let (rax, rbx, r10, r11, r12, r13) = unsafe {
        (
            load(&raw const (*r).rax),
            load(&raw const (*r).rbx),
            load(&raw const (*r).r10),
            load(&raw const (*r).r11),
            load(&raw const (*r).r12),
            load(&raw const (*r).r13),
        )
    };
    // SAFETY: as above.
    let (r14, r15, rbp, rsp) = unsafe {
        (
            load(&raw const (*r).r14),
            load(&raw const (*r).r15),
            load(&raw const (*r).rbp),
            load(&raw const (*r).rsp),
        )
    };
    Some(match location {
        loc::ARG0 | loc::RDI => rdi,
        loc::ARG1 | loc::RSI => rsi,
        loc::ARG2 | loc::RDX => rdx,
        loc::ARG3 | loc::RCX => rcx,
        loc::ARG4 | loc::R8 => r8,
        loc::ARG5 | loc::R9 => r9,
        loc::RAX => rax,
        loc::RBX => rbx,
        loc::R10 => r10,
        loc::R11 => r11,
        loc::R12 => r12,
        loc::R13 => r13,
        loc::R14 => r14,
        loc::R15 => r15,
        loc::RBP => rbp,
        loc::RSP => rsp,
        _ => return None,
    })
}

pub fn stack_pointer(ctx: &ProbeContext) -> u64 {
    // SAFETY: as in `read`.
    unsafe { (*ctx.regs).rsp }
}

/// The user stack at this probe, as configured by `stack` (`STACK_*` bits), stored in `STACKS`
/// under a 64-bit hash of its frames (and caller fixup); returns that key, or 0 for none.
/// `scratch` is the thread's buffer for assembling it.
#[inline(always)]
pub fn capture_stack(
    ctx: &ProbeContext,
    stack: u8,
    scratch: &mut tracer_common::stack::StackValue,
) -> u64 {
    use aya_ebpf::{
        EbpfContext as _,
        bindings::BPF_F_USER_STACK,
        helpers::{bpf_probe_read_user, generated::bpf_get_stack},
    };
    use tracer_common::{
        counter::Counter,
        maps::MAX_STACK_FRAMES,
        probe::{STACK_CALLER_FIXUP, STACK_CAPTURE, STACK_PYTHON},
        python::MAX_PY_FRAMES,
    };
    if stack & STACK_CAPTURE == 0 {
        return 0;
    }
    let size = core::mem::size_of_val(&scratch.frames) as u32;
    // SAFETY: the helper writes at most `size` bytes into the thread's scratch frames.
    let written = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            scratch.frames.as_mut_ptr().cast(),
            size,
            u64::from(BPF_F_USER_STACK),
        )
    };
    if written <= 0 {
        crate::emit::bump(Counter::StackLost);
        return 0;
    }
    let len = (written as u32 / 8).min(MAX_STACK_FRAMES);
    scratch.len = len;
    scratch.caller = if stack & STACK_CALLER_FIXUP != 0 {
        // SAFETY: reads user memory through the helper, which handles faults.
        unsafe { bpf_probe_read_user(stack_pointer(ctx) as *const u64) }.unwrap_or(0)
    } else {
        0
    };
    scratch.py_len = if stack & STACK_PYTHON != 0 {
        crate::python::walk(scratch)
    } else {
        0
    };
    let len = if scratch.py_len > 0 {
        // With Python frames, keep only the native frames known to be right: the probed
        // instruction and its caller (the interpreter is built without frame pointers, so the
        // walk's deeper frames are whatever its registers held, and multiplied the number of
        // distinct stacks by thousands).
        let reliable = if scratch.caller != 0 { 1 } else { 2 };
        len.min(reliable)
    } else {
        len
    };
    scratch.len = len;
    // FNV-1a over the frames (words, not bytes: one multiply per frame).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..MAX_STACK_FRAMES as usize {
        if i >= len as usize {
            break;
        }
        hash = (hash ^ scratch.frames[i]).wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ scratch.caller).wrapping_mul(0x0100_0000_01b3);
    // The Python frames too, so one native path reached from different Python code is
    // stored once per Python stack.
    for i in 0..MAX_PY_FRAMES as usize {
        if i >= scratch.py_len as usize {
            break;
        }
        let frame = scratch.py_frames[i];
        hash = (hash ^ frame.code).wrapping_mul(0x0100_0000_01b3);
        hash = (hash ^ u64::from(frame.instr)).wrapping_mul(0x0100_0000_01b3);
    }
    if hash == 0 {
        hash = 1;
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { crate::maps::STACKS.get(&hash) }.is_none()
        && crate::maps::STACKS.insert(&hash, &*scratch, u64::from(aya_ebpf::bindings::BPF_NOEXIST)).is_err()
        // SAFETY: as above; another CPU may have stored the same stack meanwhile.
        && unsafe { crate::maps::STACKS.get(&hash) }.is_none()
    {
        // The map is full: this stack's frames cannot be kept.
        crate::emit::bump(Counter::StackLost);
        return 0;
    }
    hash
}
