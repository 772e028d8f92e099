//! Language-runtime events: garbage-collection cycles and stop-the-world pauses.

use crate::event::EventHeader;

/// A runtime event (`GcStart`, `GcEnd`, `StwStart`, `StwEnd`) with what the probe could read.
/// `values` are the probe's configured reads in order (e.g. Go: cycle number, bytes marked live,
/// heap goal; CPython: generation or collected objects from the USDT argument in `arg`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub header: EventHeader,
    pub values: [u64; 3],
    /// The USDT argument or register value (e.g. the STW reason, the GC generation).
    pub arg: u64,
}

const _: () = assert!(core::mem::size_of::<RuntimeEvent>() == 64);

#[cfg(feature = "user")]
// SAFETY: `RuntimeEvent` is `#[repr(C)]` with integer fields and no implicit padding.
unsafe impl aya::Pod for RuntimeEvent {}
