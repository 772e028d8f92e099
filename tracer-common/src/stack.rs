//! User call stacks, deduplicated by the eBPF side under a 64-bit hash of their frames.

use crate::{
    maps::MAX_STACK_FRAMES,
    python::{MAX_PY_FRAMES, PyFrame},
};

/// One stack, the value of the `STACKS` map (key: its hash, carried by the events).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackValue {
    /// Frames used in `frames`.
    pub len: u32,
    /// Frames used in `py_frames`.
    pub py_len: u32,
    /// The immediate caller read at `[rsp]` when the frame-pointer walk skips it (see
    /// `probe::STACK_CALLER_FIXUP`); 0 otherwise. It belongs between `frames[0]` and `frames[1]`.
    pub caller: u64,
    /// `frames[0]` is the probed instruction; the rest are return addresses, innermost first.
    pub frames: [u64; MAX_STACK_FRAMES as usize],
    /// The Python stack of the thread at the same moment (CPython 3.11 with a frame-walk
    /// configuration; `py_len` 0 otherwise), innermost first.
    pub py_frames: [PyFrame; MAX_PY_FRAMES as usize],
}

impl StackValue {
    pub const EMPTY: StackValue = StackValue {
        len: 0,
        py_len: 0,
        caller: 0,
        frames: [0; MAX_STACK_FRAMES as usize],
        py_frames: [PyFrame {
            code: 0,
            instr: 0,
            owner: 0,
        }; MAX_PY_FRAMES as usize],
    };

    /// The stack's addresses, innermost first, with the caller fixup in place.
    #[cfg(feature = "user")]
    pub fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        let n = (self.len as usize).min(self.frames.len());
        let frames = &self.frames[..n];
        let caller = (self.caller != 0).then_some(self.caller);
        frames
            .iter()
            .take(1)
            .copied()
            .chain(caller)
            .chain(frames.iter().skip(1).copied())
    }

    /// The Python frames, innermost first.
    pub fn python_frames(&self) -> &[PyFrame] {
        let n = (self.py_len as usize).min(self.py_frames.len());
        &self.py_frames[..n]
    }
}

impl Default for StackValue {
    fn default() -> Self {
        StackValue::EMPTY
    }
}

const _: () = assert!(
    core::mem::size_of::<StackValue>()
        == 16 + 8 * MAX_STACK_FRAMES as usize + 16 * MAX_PY_FRAMES as usize
);

#[cfg(feature = "user")]
// SAFETY: `StackValue` is `#[repr(C)]`, integers only, padding explicit.
unsafe impl aya::Pod for StackValue {}
