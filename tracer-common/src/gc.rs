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

/// Values a stats probe reads at most.
pub const MAX_STAT_READS: usize = 16;

/// What a stats probe reads (`STAT_READS`, keyed by probe id): `count` values, value `i` being
/// `sizes[i]` bytes at the absolute address `addrs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatReads {
    pub addrs: [u64; MAX_STAT_READS],
    pub sizes: [u8; MAX_STAT_READS],
    pub count: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<StatReads>() == 152);

#[cfg(feature = "user")]
// SAFETY: `StatReads` is `#[repr(C)]` with integer fields and no implicit padding.
unsafe impl aya::Pod for StatReads {}

/// A runtime event with many values (`header.flags` has [`crate::event::FLAG_STATS`]): Go's
/// `gc_end`, with the runtime's heap and CPU accounting besides the cycle number. `values[i]`
/// is read `i` of the probe's [`StatReads`] (0 past `count` or when unreadable).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsEvent {
    pub header: EventHeader,
    pub values: [u64; MAX_STAT_READS],
}

const _: () = assert!(core::mem::size_of::<StatsEvent>() == 32 + 8 * MAX_STAT_READS);

#[cfg(feature = "user")]
// SAFETY: `StatsEvent` is `#[repr(C)]` with integer fields and no implicit padding.
unsafe impl aya::Pod for StatsEvent {}
