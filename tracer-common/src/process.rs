//! The process tree: which processes are traced, and the records that tell user space about
//! forks, execs, exits and processes held while their new code is probed.
//!
//! Uprobes are attached once per file for every process (so a forked child keeps its parent's
//! probes from its first instruction) and each program checks the process's entry in
//! [`crate::maps::TARGETS`], an array indexed by tgid, before doing anything else. The
//! scheduler tracepoints keep it current: a traced process's new child is added before it first
//! runs (`task_newtask` fires in the parent), an exit clears its entry.

use crate::event::EventHeader;

/// `TARGETS` value bits.
pub mod flags {
    /// The process's probes write rows.
    pub const TRACED: u32 = 1;
    /// Its new processes (fork, vfork, clone without `CLONE_THREAD`) are traced too, with the
    /// same flags.
    pub const FOLLOW: u32 = 1 << 1;
    /// Stopped (SIGSTOP) at exec and after each executable file mmap until user space has
    /// probed the new code and resumed it (SIGCONT).
    pub const HOLD: u32 = 1 << 2;
    /// `exit_group` was called: the code is in bits 8..16.
    pub const EXITED: u32 = 1 << 3;
    /// A signal whose default action kills the process was delivered: the signal number is
    /// in bits 16..24.
    pub const SIGNALED: u32 = 1 << 4;
    pub const CODE_SHIFT: u32 = 8;
    pub const SIGNAL_SHIFT: u32 = 16;
    /// The bits a new child inherits.
    pub const INHERITED: u32 = TRACED | FOLLOW | HOLD;
}

/// What a [`ProcessEvent`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessChange {
    /// A traced process made a new process (`header.pid`); `other` is the parent's tgid.
    Fork = 1,
    /// `header.pid` ran exec; `held` says whether it is stopped until user space resumes it.
    Exec = 2,
    /// The last thread of `header.pid` exited; `status` holds the `TARGETS` bits with the exit
    /// code or signal.
    Exit = 3,
    /// `header.pid` mapped an executable file and is stopped until user space resumes it.
    Mapped = 4,
    /// `header.pid` reached CPython's `Py_FinalizeEx` and is stopped until its frames are named.
    Finalize = 5,
}

impl ProcessChange {
    pub const fn from_u32(v: u32) -> Option<ProcessChange> {
        Some(match v {
            1 => ProcessChange::Fork,
            2 => ProcessChange::Exec,
            3 => ProcessChange::Exit,
            4 => ProcessChange::Mapped,
            5 => ProcessChange::Finalize,
            _ => return None,
        })
    }
}

/// A change in the traced process tree (`EventKind::Process`). `header.pid` is the process
/// the change is about (for a fork, the child).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessEvent {
    pub header: EventHeader,
    /// A [`ProcessChange`].
    pub change: u32,
    /// Fork: the parent's tgid. Exec: the thread id that ran exec.
    pub other: u32,
    /// Exit: the `TARGETS` value (flags, exit code, signal).
    pub status: u32,
    /// 1 when the process was stopped and waits for user space to resume it.
    pub held: u32,
}

const _: () = assert!(core::mem::size_of::<ProcessEvent>() == 48);
const _: () = assert!(core::mem::offset_of!(ProcessEvent, change) == 32);

/// Decoded exit status from a `TARGETS` value at exit.
pub fn exit_status(value: u32) -> (Option<u8>, Option<u8>) {
    let code = (value & flags::EXITED != 0).then_some((value >> flags::CODE_SHIFT) as u8);
    let signal = (value & flags::SIGNALED != 0 && value & flags::EXITED == 0)
        .then_some((value >> flags::SIGNAL_SHIFT) as u8);
    (code, signal)
}
