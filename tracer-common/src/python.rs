//! Python-level call stacks (CPython 3.11): what user space tells the eBPF side about the
//! interpreter of a traced process, and what a walk of its frame chain stores per frame.

/// Python frames kept per stack (the innermost ones; deeper stacks are cut, counted as
/// `python_stack_truncated`).
pub const MAX_PY_FRAMES: u32 = 32;

/// Bytes of a `_PyInterpreterFrame` read in one `bpf_probe_read_user`: up to and including
/// `prev_instr` (offset 56 in 3.11). User space checks that the members read fall inside it.
pub const FRAME_PREFIX: usize = 64;

/// One Python frame of a stack: the code object it runs and where in its bytecode it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyFrame {
    /// The frame's `f_code` (a `PyCodeObject *` in the traced process).
    pub code: u64,
    /// Byte offset of the instruction executing (`prev_instr`) from the start of the bytecode
    /// (`co_code_adaptive`): code unit index × 2. Negative as an `i32` for a frame whose first
    /// instruction has not run yet (it points before the bytecode).
    pub instr: u32,
    pub _pad: u32,
}

/// The interpreter of one traced process (tgid): where the thread state of the thread holding
/// the GIL is, and the member offsets to follow from it. Value of the `PYTHON_STACKS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyStackConfig {
    /// Address of `_PyRuntime.gilstate.tstate_current` in the process.
    pub tstate_current: u64,
    /// `PyThreadState.cframe` and `.native_thread_id`.
    pub tstate_cframe: u32,
    pub tstate_native_thread_id: u32,
    /// `_PyCFrame.current_frame`.
    pub cframe_current_frame: u32,
    /// `_PyInterpreterFrame.f_code`, `.previous`, `.prev_instr` (8-byte aligned, inside
    /// [`FRAME_PREFIX`]).
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_prev_instr: u32,
    /// `PyCodeObject.co_code_adaptive`: where the bytecode starts.
    pub code_adaptive: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<PyFrame>() == 16);
const _: () = assert!(core::mem::size_of::<PyStackConfig>() == 40);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, integers only, no implicit padding.
unsafe impl aya::Pod for PyStackConfig {}
