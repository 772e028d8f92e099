//! Names of the maps and globals the eBPF object defines; user space looks them up by these.

pub const EVENTS: &str = "EVENTS";
pub const THREADS: &str = "THREADS";
pub const SYSCALLS: &str = "SYSCALLS";
pub const COUNTERS: &str = "COUNTERS";
pub const HITS: &str = "HITS";
pub const TARGETS: &str = "TARGETS";

/// Global: submit with a forced wake-up once this many bytes are waiting in [`EVENTS`]; below
/// it records are submitted without waking the reader, which drains on a timer instead.
pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";

/// Default ring-buffer size in bytes (a power of two, as the kernel requires).
pub const DEFAULT_RING_BYTES: u32 = 64 << 20;
/// Entries of the per-thread state maps.
pub const MAX_THREADS: u32 = 65536;
/// Entries of [`TARGETS`]: processes traced at once.
pub const MAX_TARGETS: u32 = 1024;
