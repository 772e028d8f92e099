//! Allocator calls: malloc and friends, C++ operator new/delete.

use crate::event::EventHeader;

/// One allocator call, written when the outermost allocator function returns (allocations) or
/// is entered (frees).
///
/// | kind      | `addr`              | `size`            | `arg`                    |
/// |-----------|---------------------|-------------------|--------------------------|
/// | `Alloc`   | returned pointer (0 if the call failed) | bytes requested (calloc: nmemb × size) | alignment, 0 if none |
/// | `Realloc` | returned pointer    | new size          | the old pointer          |
/// | `Free`    | freed pointer       | 0                 | 0                        |
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocEvent {
    pub header: EventHeader,
    pub addr: u64,
    pub size: u64,
    pub arg: u64,
    /// The call stack's key in the `STACKS` map (a hash of its frames); 0 for none.
    pub stack: u64,
}

const _: () = assert!(core::mem::size_of::<AllocEvent>() == 64);
const _: () = assert!(core::mem::offset_of!(AllocEvent, addr) == 32);
const _: () = assert!(core::mem::offset_of!(AllocEvent, arg) == 48);

#[cfg(feature = "user")]
// SAFETY: `AllocEvent` is `#[repr(C)]` with integer fields and no implicit padding.
unsafe impl aya::Pod for AllocEvent {}
