//! Names of the maps and globals the eBPF object defines; user space looks them up by these.

pub const EVENTS: &str = "EVENTS";
pub const THREADS: &str = "THREADS";
pub const SYSCALLS: &str = "SYSCALLS";
pub const COUNTERS: &str = "COUNTERS";
pub const TARGETS: &str = "TARGETS";
/// Per-probe configuration (`probe::ProbeConfig`), indexed by probe id.
pub const PROBES: &str = "PROBES";
/// User stacks: a hash map from a 64-bit hash of a stack's frames to the frames
/// (`stack::StackValue`), referenced by the `stack` field of allocation records.
pub const STACKS: &str = "STACKS";
/// Entries of [`STACKS`]: distinct stacks kept. A stack that finds the map full is counted as
/// `stacks_lost` and its row written without a stack.
pub const MAX_STACKS: u32 = 65536;
/// Frames kept per stack (the innermost ones).
pub const MAX_STACK_FRAMES: u32 = 64;
/// Per-process CPython frame-walk configuration (`python::PyStackConfig`), keyed by tgid.
pub const PYTHON_STACKS: &str = "PYTHON_STACKS";
/// What each stats probe reads (`gc::StatReads`), keyed by probe id.
pub const STAT_READS: &str = "STAT_READS";
/// Entries of [`STAT_READS`].
pub const MAX_STAT_PROBES: u32 = 64;
/// Go allocation calls in progress (`golang::GoCall`), keyed by goroutine (`golang::GoKey`).
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
/// Entries of per-process hash maps (`PYTHON_STACKS`): processes configured at once.
pub const MAX_TARGETS: u32 = 1024;
/// Default entries of [`TARGETS`] (an array indexed by tgid, `process::flags` bits): the
/// kernel's default `pid_max`. User space sizes it to the running kernel's `pid_max` at load.
pub const DEFAULT_PID_MAX: u32 = 32768;
/// Largest `pid_max` the kernel allows (`PID_MAX_LIMIT` on 64-bit).
pub const PID_MAX_LIMIT: u32 = 4 << 20;
/// Executable file mmaps in progress of held processes, per thread.
pub const HOLD_MMAPS: &str = "HOLD_MMAPS";
