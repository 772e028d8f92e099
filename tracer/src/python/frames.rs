//! Where CPython 3.11–3.13 keep the Python call stack, from the interpreter's DWARF: the
//! offsets an eBPF program needs to walk the frame chain of the thread holding the GIL, and
//! those user space needs to name a frame (code object → qualified name, file, line).
//!
//! The chain: a global points to the `PyThreadState` of the thread holding the GIL —
//! `_PyRuntime.gilstate.tstate_current` in 3.11; from 3.12 the thread state is thread-local and
//! the main interpreter's GIL (`_PyRuntime._main_interpreter._gil`) names its `last_holder`
//! (still the thread's own state after it drops the GIL, until another thread takes it: its
//! frames are then still its stack). The thread state's innermost `_PyInterpreterFrame` is
//! `cframe->current_frame` (3.11, 3.12) or `current_frame` (3.13); `previous` links lead
//! outwards, across nested `_PyEval_EvalFrameDefault` calls too. Each frame names its code
//! (`f_code`, 3.13 `f_executable`) and the instruction it executes (`prev_instr`, 3.13
//! `instr_ptr`, a pointer into the code object's `co_code_adaptive`). From 3.12 a C call into
//! the interpreter pushes an entry frame marked `owner = FRAME_OWNED_BY_CSTACK` (3.13: its
//! `f_executable` is `None`), which is not a Python function and is left out. The location
//! table (`co_linetable`) has one format in 3.11–3.13. 3.10 and earlier chain
//! `PyFrameObject`s, 3.14 reworked frames again (`f_executable` became a tagged
//! `_PyStackRef`): those are not described here ([`FrameLayoutError::Version`]).

use super::{PyVersion, binary::Binary, dwarf};

/// Offsets (bytes) of everything read to walk and name the Python stack. Every value comes from
/// the interpreter's DWARF (the meanings of the string `kind` values are fixed by the sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// Link-time address (add the load bias) of the pointer to the GIL holder's thread state:
    /// `_PyRuntime.gilstate.tstate_current` (3.11), `_PyRuntime._main_interpreter._gil.
    /// last_holder` (3.12+).
    pub tstate_current: u64,
    /// `PyThreadState.cframe` (a `_PyCFrame *`, 3.11 and 3.12) or `.current_frame` (3.13).
    pub tstate_cframe: u64,
    /// `PyThreadState.native_thread_id` (the kernel thread id on Linux).
    pub tstate_native_thread_id: u64,
    /// `_PyCFrame.current_frame`; `None` when `tstate_cframe` is the current frame (3.13).
    pub cframe_current_frame: Option<u64>,
    /// `_PyInterpreterFrame` members: `f_code` (3.13 `f_executable`), `previous`,
    /// `prev_instr` (3.13 `instr_ptr`), `owner`.
    pub frame_code: u64,
    pub frame_previous: u64,
    pub frame_instr: u64,
    pub frame_owner: u64,
    /// The `owner` value of entry frames pushed by C code (`FRAME_OWNED_BY_CSTACK`, 3.12+),
    /// which are not Python functions.
    pub cstack_owner: Option<u8>,
    /// `PyCodeObject` members.
    pub code_name: u64,
    pub code_qualname: u64,
    pub code_filename: u64,
    pub code_firstlineno: u64,
    pub code_linetable: u64,
    pub code_firsttraceable: u64,
    /// Where the bytecode starts: `co_code_adaptive`.
    pub code_adaptive: u64,
    /// `sizeof(PyCodeObject)` up to and including `co_code_adaptive`'s first byte.
    pub code_size: u64,
    /// `PyVarObject.ob_size` (length of a bytes object).
    pub var_size: u64,
    /// `PyBytesObject.ob_sval`.
    pub bytes_data: u64,
    /// `PyASCIIObject.length` and the `state` bit-fields.
    pub str_length: u64,
    pub str_state: u64,
    /// (first bit, width) of `state.kind`, `state.compact`, `state.ascii` in the 32-bit word at
    /// `str_state`.
    pub str_kind_bits: (u32, u32),
    pub str_compact_bit: u32,
    pub str_ascii_bit: u32,
    /// Where the characters of a compact string start: `sizeof(PyASCIIObject)` for ASCII,
    /// `sizeof(PyCompactUnicodeObject)` otherwise.
    pub str_ascii_data: u64,
    pub str_compact_data: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameLayoutError {
    #[error("CPython {version} is not supported (the frame chain is read for 3.11, 3.12 and 3.13)")]
    Version { version: String },
    #[error(
        "CPython {version} is newer than the frame layouts alloctrace knows (3.11–3.13): \
         Python frames are not recorded (native stacks, allocations and collections are)"
    )]
    Newer { version: String },
    #[error("{what} not found in the interpreter's symbol table")]
    Symbol { what: &'static str },
    #[error("the interpreter has no (uncompressed) DWARF for {what}")]
    NoDwarf { what: &'static str },
    #[error("the interpreter's DWARF has no {what}")]
    Missing { what: String },
    #[error("{what} is at offset {offset}, which the eBPF walk cannot read in one step")]
    Unsupported { what: &'static str, offset: u64 },
}

/// Whether the frame chain of `version` is described here: 3.11–3.13. Newer versions get their
/// own error, for run.json to say what is not supported.
pub fn check_version(version: &PyVersion) -> Result<(), FrameLayoutError> {
    let text = version.to_string();
    match (version.major, version.minor) {
        (3, 11..=13) => Ok(()),
        (3, 14..) | (4.., _) => Err(FrameLayoutError::Newer { version: text }),
        _ => Err(FrameLayoutError::Version { version: text }),
    }
}

/// Reads the layout from `bin`'s DWARF.
pub(crate) fn layout(bin: &Binary, version: &PyVersion) -> Result<FrameLayout, FrameLayoutError> {
    check_version(version)?;
    let runtime = bin
        .object("_PyRuntime")
        .ok_or(FrameLayoutError::Symbol { what: "_PyRuntime" })?;
    // ceval.c's unit declares every type the interpreter loop touches: the runtime state,
    // thread state, frames, code objects and the string and bytes objects.
    let eval = bin
        .function("_PyEval_EvalFrameDefault")
        .ok_or(FrameLayoutError::Symbol {
            what: "_PyEval_EvalFrameDefault",
        })?;
    let unit = dwarf::unit_for(bin, eval.address).ok_or(FrameLayoutError::NoDwarf {
        what: "_PyEval_EvalFrameDefault",
    })?;
    let missing = |what: String| FrameLayoutError::Missing { what };
    let layout = |name: &str| {
        unit.type_layout(name)
            .ok_or_else(|| missing(format!("type {name}")))
    };
    let member = |ty: &str, l: &dwarf::StructLayout, path: &[&str]| {
        unit.member_path(l, path)
            .ok_or_else(|| missing(format!("member {ty}.{}", path.join("."))))
    };
    let runtime_state = layout("_PyRuntimeState")?;
    let tstate = layout("PyThreadState")?;
    let frame = layout("_PyInterpreterFrame")?;
    let code = layout("PyCodeObject")?;
    let var = layout("PyVarObject")?;
    let bytes = layout("PyBytesObject")?;
    let ascii = layout("PyASCIIObject")?;
    let compact = layout("PyCompactUnicodeObject")?;

    let tstate_current = if version.minor == 11 {
        member(
            "_PyRuntimeState",
            &runtime_state,
            &["gilstate", "tstate_current"],
        )?
    } else {
        member(
            "_PyRuntimeState",
            &runtime_state,
            &["_main_interpreter", "_gil", "last_holder"],
        )?
    };
    // 3.13 dropped `_PyCFrame` and renamed the frame's code and instruction members.
    let (tstate_cframe, cframe_current_frame, code_member, instr_member) = if version.minor <= 12 {
        let cframe = layout("_PyCFrame")?;
        (
            member("PyThreadState", &tstate, &["cframe"])?.offset,
            Some(member("_PyCFrame", &cframe, &["current_frame"])?.offset),
            "f_code",
            "prev_instr",
        )
    } else {
        (
            member("PyThreadState", &tstate, &["current_frame"])?.offset,
            None,
            "f_executable",
            "instr_ptr",
        )
    };
    let bit = |path: &[&str]| -> Result<(u32, u32), FrameLayoutError> {
        let m = member("PyASCIIObject", &ascii, path)?;
        let (first, width) = m
            .bits
            .ok_or_else(|| missing(format!("bit-field PyASCIIObject.{}", path.join("."))))?;
        Ok((first as u32, width as u32))
    };
    let state = member("PyASCIIObject", &ascii, &["state"])?;
    let code_adaptive = member("PyCodeObject", &code, &["co_code_adaptive"])?.offset;
    let out = FrameLayout {
        tstate_current: runtime.address + tstate_current.offset,
        tstate_cframe,
        tstate_native_thread_id: member("PyThreadState", &tstate, &["native_thread_id"])?.offset,
        cframe_current_frame,
        frame_code: member("_PyInterpreterFrame", &frame, &[code_member])?.offset,
        frame_previous: member("_PyInterpreterFrame", &frame, &["previous"])?.offset,
        frame_instr: member("_PyInterpreterFrame", &frame, &[instr_member])?.offset,
        frame_owner: member("_PyInterpreterFrame", &frame, &["owner"])?.offset,
        // `enum _frameowner` in Include/internal/pycore_frame.h: 3 since 3.12, where it was
        // introduced; `owner` is a `char`, so the enum is not tied to the member in DWARF.
        cstack_owner: (version.minor >= 12).then_some(3),
        code_name: member("PyCodeObject", &code, &["co_name"])?.offset,
        code_qualname: member("PyCodeObject", &code, &["co_qualname"])?.offset,
        code_filename: member("PyCodeObject", &code, &["co_filename"])?.offset,
        code_firstlineno: member("PyCodeObject", &code, &["co_firstlineno"])?.offset,
        code_linetable: member("PyCodeObject", &code, &["co_linetable"])?.offset,
        code_firsttraceable: member("PyCodeObject", &code, &["_co_firsttraceable"])?.offset,
        code_adaptive,
        code_size: code_adaptive + 1,
        var_size: member("PyVarObject", &var, &["ob_size"])?.offset,
        bytes_data: member("PyBytesObject", &bytes, &["ob_sval"])?.offset,
        str_length: member("PyASCIIObject", &ascii, &["length"])?.offset,
        str_state: state.offset,
        str_kind_bits: bit(&["state", "kind"])?,
        str_compact_bit: bit(&["state", "compact"])?.0,
        str_ascii_bit: bit(&["state", "ascii"])?.0,
        str_ascii_data: ascii.size,
        str_compact_data: compact.size,
    };
    check_frame_prefix(&out)?;
    Ok(out)
}

/// The eBPF side reads a frame's first [`tracer_common::python::FRAME_READ`] bytes at once,
/// and the pointers in them as aligned words.
fn check_frame_prefix(layout: &FrameLayout) -> Result<(), FrameLayoutError> {
    let prefix = tracer_common::python::FRAME_PREFIX as u64;
    for (what, offset) in [
        ("_PyInterpreterFrame.f_code", layout.frame_code),
        ("_PyInterpreterFrame.previous", layout.frame_previous),
        ("_PyInterpreterFrame.prev_instr", layout.frame_instr),
    ] {
        if offset + 8 > prefix || offset % 8 != 0 {
            return Err(FrameLayoutError::Unsupported { what, offset });
        }
    }
    // The owner byte is read from the word after the prefix.
    let read = tracer_common::python::FRAME_READ as u64;
    if !(prefix..read).contains(&layout.frame_owner) {
        return Err(FrameLayoutError::Unsupported {
            what: "_PyInterpreterFrame.owner",
            offset: layout.frame_owner,
        });
    }
    Ok(())
}
