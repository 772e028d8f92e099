//! The Python stack of the thread that hit an allocation probe (CPython 3.11–3.13): the frame
//! chain from the GIL holder's thread state, read with the offsets user space found in the
//! interpreter's DWARF (`PYTHON_STACKS`).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated::bpf_send_signal},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{
    counter::Counter,
    python::{FRAME_PREFIX, FRAME_READ, MAX_PY_FRAMES, NO_CFRAME, PyFrame},
    stack::StackValue,
};

use crate::{
    emit::{bump, emit_now, header},
    maps::{PYTHON_STACKS, is_traced},
    regs::read_user_u64,
};

const PREFIX_WORDS: usize = FRAME_PREFIX / 8;
const READ_WORDS: usize = FRAME_READ / 8;

/// Fills `scratch.py_frames` with the current thread's Python frames, innermost first, and
/// returns how many there are: 0 when the process has no configuration, the interpreter is
/// not initialised, or this thread does not hold the GIL (a raw-domain allocation made while
/// another thread runs Python code: the GIL holder's frames are not this thread's stack).
///
/// Every frame visited is stored, even one whose first instruction has not run yet (just
/// pushed by a call: `prev_instr` points before its bytecode, so `instr` is negative as an
/// `i32`): user space drops those, as CPython leaves them out of tracebacks. Skipping them here
/// would make the kept count differ from the loop counter, and the verifier would then track
/// every combination of the two (it gave up at a million instructions).
#[inline(always)]
pub fn walk(scratch: &mut StackValue) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: the value is copied out before the map can change.
    let Some(cfg) = (unsafe { PYTHON_STACKS.get(&tgid) }).copied() else {
        return 0;
    };
    let Some(tstate) = read_user_u64(cfg.tstate_current) else {
        bump(Counter::PyFrameUnreadable);
        return 0;
    };
    if tstate == 0 {
        return 0;
    }
    let (Some(thread), Some(cframe)) = (
        read_user_u64(tstate + u64::from(cfg.tstate_native_thread_id)),
        read_user_u64(tstate + u64::from(cfg.tstate_cframe)),
    ) else {
        bump(Counter::PyFrameUnreadable);
        return 0;
    };
    if thread as u32 != pid_tgid as u32 || cframe == 0 {
        return 0;
    }
    // 3.11 and 3.12 keep the current frame in a `_PyCFrame`; 3.13 in the thread state itself.
    let mut frame = cframe;
    if cfg.cframe_current_frame != NO_CFRAME {
        let Some(current) = read_user_u64(cframe + u64::from(cfg.cframe_current_frame)) else {
            bump(Counter::PyFrameUnreadable);
            return 0;
        };
        frame = current;
    }
    // Word indices into the frame prefix; masked so each index is provably inside it (user
    // space checked that the offsets are aligned and inside FRAME_PREFIX).
    let mask = PREFIX_WORDS as u32 - 1;
    let (code_at, previous_at, instr_at) = (
        ((cfg.frame_code / 8) & mask) as usize,
        ((cfg.frame_previous / 8) & mask) as usize,
        ((cfg.frame_instr / 8) & mask) as usize,
    );
    // The owner byte's position in the word after the prefix (user space checked it is there).
    let owner_shift = ((cfg.frame_owner % 8) * 8) as u64;
    let adaptive = u64::from(cfg.code_adaptive);
    let mut n: u32 = 0;
    for i in 0..MAX_PY_FRAMES {
        if frame == 0 {
            break;
        }
        // One read per frame: the members used are all in its first FRAME_READ bytes.
        // SAFETY: reads user memory through the helper, which handles faults.
        let Ok(words) = (unsafe { bpf_probe_read_user(frame as *const [u64; READ_WORDS]) }) else {
            bump(Counter::PyFrameUnreadable);
            break;
        };
        let code = words[code_at];
        let prev_instr = words[instr_at];
        if let Some(slot) = scratch.py_frames.get_mut(i as usize) {
            *slot = PyFrame {
                code,
                instr: prev_instr.wrapping_sub(code.wrapping_add(adaptive)) as u32,
                owner: ((words[PREFIX_WORDS] >> owner_shift) & 0xff) as u32,
            };
        }
        n = i + 1;
        frame = words[previous_at];
    }
    if frame != 0 && n == MAX_PY_FRAMES {
        // Frames remain: the stack was deeper than kept (or the chain loops).
        bump(Counter::PyStackTruncated);
    }
    n
}

/// `Py_FinalizeEx` entry: stops the process (SIGSTOP, delivered as the probe returns to user
/// mode) so user space can drain the ring and name every Python frame while the code objects
/// still exist; finalization frees them. User space sends SIGCONT once it has. The signal is
/// queued before the counter is bumped, so a SIGCONT sent on seeing the counter either resumes
/// the stopped process or cancels the still-pending stop.
#[uprobe]
pub fn python_finalize(_ctx: ProbeContext) -> u32 {
    const SIGSTOP: u32 = 19;
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_traced(pid_tgid) {
        return 0;
    }
    // SAFETY: a helper call with a constant signal number; it signals the current process.
    let _ = unsafe { bpf_send_signal(SIGSTOP) };
    bump(Counter::PyHeldAtFinalize);
    // Tell user space which process waits (several may, when the tree is followed).
    emit_now(tracer_common::process::ProcessEvent {
        header: header(
            tracer_common::event::EventKind::Process as u32,
            0,
            pid_tgid,
            0,
        ),
        change: tracer_common::process::ProcessChange::Finalize as u32,
        other: 0,
        status: 0,
        held: 1,
    });
    0
}
