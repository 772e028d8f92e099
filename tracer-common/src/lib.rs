//! The data contract between the eBPF programs (`tracer-ebpf`) and user space (`tracer`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, because the kernel side writes these
//! structs into maps and the ring buffer and the user side reads the same bytes back. Each
//! struct's size and field offsets are asserted at compile time, so a change that would make the
//! two sides disagree fails to build instead of producing garbage.
//!
//! ```no_run
//! use tracer_common::event::{EventHeader, EventKind};
//! let kind = EventKind::from_u32(1);
//! assert_eq!(kind, Some(EventKind::Alloc));
//! ```
#![no_std]

pub mod alloc;
pub mod counter;
pub mod event;
pub mod gc;
pub mod golang;
pub mod maps;
pub mod mem;
pub mod probe;
pub mod process;
pub mod python;
pub mod stack;
pub mod thread;
