//! Reading arguments and registers named by `tracer_common::probe::loc`.

use aya_ebpf::{EbpfContext, helpers::generated::bpf_get_attach_cookie, programs::ProbeContext};
use tracer_common::probe::{ProbeConfig, loc};

use crate::maps::{PROBES, is_traced};

/// A probe hit in a traced process, with the configuration user space stored for the probe.
pub struct Hit {
    pub pid_tgid: u64,
    pub probe: u32,
    /// The link's whole cookie: `probe` in its low half (a helper call, made once per hit).
    pub cookie: u64,
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
    let cookie = full_cookie(ctx);
    let probe = cookie as u32;
    let Some(cfg) = config(probe) else {
        crate::emit::bump(tracer_common::counter::Counter::NoConfig);
        return None;
    };
    Some(Hit {
        pid_tgid,
        probe,
        cookie,
        cfg,
    })
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

/// The 8 bytes of user memory at `addr`, `None` if they cannot be read.
#[inline(always)]
pub fn read_user_u64(addr: u64) -> Option<u64> {
    // SAFETY: reads user memory through the helper, which handles faults.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const u64) }.ok()
}

pub fn stack_pointer(ctx: &ProbeContext) -> u64 {
    // SAFETY: as in `read`.
    unsafe { (*ctx.regs).rsp }
}
