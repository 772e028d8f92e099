//! Names of the maps and globals the eBPF object defines; user space looks them up by these.

pub const EVENTS: &str = "EVENTS";
pub const THREADS: &str = "THREADS";
pub const SYSCALLS: &str = "SYSCALLS";
pub const COUNTERS: &str = "COUNTERS";
pub const TARGETS: &str = "TARGETS";
/// Per-probe configuration (`probe::ProbeConfig`), indexed by probe id.
pub const PROBES: &str = "PROBES";
/// User stacks (`BPF_MAP_TYPE_STACK_TRACE`), referenced by events' `stack_id`.
pub const STACKS: &str = "STACKS";
/// Entries (hash buckets) of [`STACKS`]. Two different stacks hashing to one bucket lose the
/// second (counted as `stacks_lost`); with N distinct stacks about N²/2·MAX_STACKS collide.
pub const MAX_STACKS: u32 = 65536;
/// Frames kept per stack (the innermost ones).
pub const MAX_STACK_FRAMES: u32 = 64;
/// Per-process CPython frame-walk configuration (`python::PyStackConfig`), keyed by tgid.
pub const PYTHON_STACKS: &str = "PYTHON_STACKS";
/// Go allocation calls in progress, keyed by goroutine.
pub const GO_CALLS: &str = "GO_CALLS";

/// Global: a submit that makes the bytes waiting in [`EVENTS`] cross a multiple of this wakes the
/// reader; other records are submitted without a wake-up and the reader drains on a timer.
pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";

/// Default ring-buffer size in bytes (a power of two, as the kernel requires).
/// 16 MiB holds ~250 ms of the fastest churn measured here, well above the reader's 100 ms timer
/// and wake-ups every eighth, and keeps the tracer's resident memory small.
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;
/// Entries of the per-thread state maps.
pub const MAX_THREADS: u32 = 65536;
/// Entries of [`TARGETS`]: processes traced at once.
pub const MAX_TARGETS: u32 = 1024;
