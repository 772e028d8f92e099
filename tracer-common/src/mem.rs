//! Address-space syscalls: mmap, munmap, mremap, brk, mprotect, madvise.

use crate::event::EventHeader;

/// One address-space syscall, written at syscall exit with its result.
///
/// | kind       | `addr`            | `len`     | `old_addr` | `old_len` | `prot` | `flags` |
/// |------------|-------------------|-----------|------------|-----------|--------|---------|
/// | `Mmap`     | result (or -errno)| length    | hint       | 0         | prot   | flags   |
/// | `Munmap`   | address           | length    | 0          | 0         | 0      | 0       |
/// | `Mremap`   | result (or -errno)| new length| old address| old length| 0      | flags   |
/// | `Brk`      | new break (result)| 0         | requested  | 0         | 0      | 0       |
/// | `Mprotect` | address           | length    | 0          | 0         | prot   | 0       |
/// | `Madvise`  | address           | length    | 0          | 0         | 0      | advice  |
///
/// `ret` is the raw syscall return value (0 or -errno for munmap, mprotect and madvise).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapEvent {
    pub header: EventHeader,
    pub addr: u64,
    pub len: u64,
    pub old_addr: u64,
    pub old_len: u64,
    pub ret: i64,
    pub prot: u32,
    pub flags: u32,
    pub fd: i32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<MapEvent>() == 88);
const _: () = assert!(core::mem::offset_of!(MapEvent, ret) == 64);
const _: () = assert!(core::mem::offset_of!(MapEvent, fd) == 80);

/// Arguments of an address-space syscall, kept per thread between `sys_enter_*` and
/// `sys_exit_*`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingSyscall {
    pub kind: u32,
    pub prot: u32,
    pub a0: u64,
    pub a1: u64,
    pub a2: u64,
    pub a3: u64,
    pub flags: u32,
    pub fd: i32,
}

const _: () = assert!(core::mem::size_of::<PendingSyscall>() == 48);

#[cfg(feature = "user")]
// SAFETY: `MapEvent` is `#[repr(C)]`, all fields are plain integers and padding is explicit.
unsafe impl aya::Pod for MapEvent {}
#[cfg(feature = "user")]
// SAFETY: `PendingSyscall` is `#[repr(C)]` with integer fields and no implicit padding.
unsafe impl aya::Pod for PendingSyscall {}
