//! Per-thread state of the allocator call in progress, kept between a function's entry probe and
//! its return probe.

/// How the return probe finds the allocated address.
pub const RESULT_IN_RAX: u32 = 0;
/// `posix_memalign`: the address is stored through the first argument when it returns 0.
pub const RESULT_THROUGH_POINTER: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// Number of allocator calls in progress on this thread (outermost = 1).
    pub depth: u32,
    /// Probe id of the outermost call.
    pub probe: u32,
    /// Stack pointer at the outermost call's entry; nested calls run below it. If a later entry
    /// finds the stack above it, the outer call was unwound without returning.
    pub outer_sp: u64,
    pub size: u64,
    pub align: u64,
    pub old_ptr: u64,
    /// `posix_memalign`'s `void **memptr`.
    pub out_ptr: u64,
    /// `EventKind::Alloc` or `EventKind::Realloc`.
    pub kind: u32,
    /// `RESULT_IN_RAX` or `RESULT_THROUGH_POINTER`.
    pub result: u32,
    /// Pointer passed to the operator delete in progress; the free it calls is folded into it.
    pub delete_ptr: u64,
    /// Stack pointer at that operator delete's entry.
    pub delete_sp: u64,
    /// Stack of the outermost call: its key in the `STACKS` map, 0 for none.
    pub stack: u64,
    /// Where a probe assembles a stack before storing it: per thread rather than per CPU,
    /// because a uprobe program can be preempted by another task's on the same CPU.
    pub scratch: crate::stack::StackValue,
    /// Values saved by runtime-event entry probes for their return probes (CPython's GC
    /// out-pointers, arena sizes); see `probe::RUNTIME_STASH`.
    pub stash: [u64; 4],
}

const _: () = assert!(
    core::mem::size_of::<ThreadState>() == 112 + core::mem::size_of::<crate::stack::StackValue>()
);

#[cfg(feature = "user")]
// SAFETY: `ThreadState` is `#[repr(C)]` with integer fields and no implicit padding.
unsafe impl aya::Pod for ThreadState {}
