//! Python-level call stacks (CPython 3.11–3.13): what user space tells the eBPF side about the
//! interpreter of a traced process, and what a walk of its frame chain stores per frame.

/// Python frames kept per stack (the innermost ones; deeper stacks are cut, counted as
/// `python_stack_truncated`).
pub const MAX_PY_FRAMES: u32 = 32;

/// Bytes of a `_PyInterpreterFrame` whose pointer members the walk reads: up to and including
/// `prev_instr` / `instr_ptr` (offset 56 in 3.11–3.13). User space checks that the pointers
/// read fall inside it.
pub const FRAME_PREFIX: usize = 64;

/// Bytes of a `_PyInterpreterFrame` read in one `bpf_probe_read_user`: the prefix and the next
/// word, which holds the `owner` byte (offset 69 in 3.11, 70 in 3.12 and 3.13). Every frame is
/// at least this long (80 bytes with its first local slot).
pub const FRAME_READ: usize = FRAME_PREFIX + 8;

/// [`PyStackConfig::cframe_current_frame`] when the thread state points to the current frame
/// itself (3.13+), not to a `_PyCFrame` holding it (3.11, 3.12).
pub const NO_CFRAME: u32 = u32::MAX;

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
    /// The frame's `owner` byte: 3.12+ mark with `FRAME_OWNED_BY_CSTACK` the entry frames a C
    /// call into the interpreter pushes, which user space leaves out as CPython does.
    pub owner: u32,
}

/// The interpreter of one traced process (tgid): where the thread state of the thread holding
/// the GIL is, and the member offsets to follow from it. Value of the `PYTHON_STACKS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyStackConfig {
    /// Address in the process of the pointer to the thread state holding the GIL:
    /// `_PyRuntime.gilstate.tstate_current` (3.11) or the main interpreter's
    /// `_gil.last_holder` (3.12+).
    pub tstate_current: u64,
    /// `PyThreadState.cframe` (3.11, 3.12) or `.current_frame` (3.13+), and
    /// `.native_thread_id`.
    pub tstate_cframe: u32,
    pub tstate_native_thread_id: u32,
    /// `_PyCFrame.current_frame`, or [`NO_CFRAME`] when `tstate_cframe` is the frame pointer.
    pub cframe_current_frame: u32,
    /// `_PyInterpreterFrame.f_code` (3.13: `f_executable`), `.previous`, `.prev_instr` (3.13:
    /// `instr_ptr`), 8-byte aligned, inside [`FRAME_PREFIX`].
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_instr: u32,
    /// `PyCodeObject.co_code_adaptive`: where the bytecode starts.
    pub code_adaptive: u32,
    /// `_PyInterpreterFrame.owner`, in the word after [`FRAME_PREFIX`].
    pub frame_owner: u32,
}

const _: () = assert!(core::mem::size_of::<PyFrame>() == 16);
const _: () = assert!(core::mem::size_of::<PyStackConfig>() == 40);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, integers only, no implicit padding.
unsafe impl aya::Pod for PyStackConfig {}
