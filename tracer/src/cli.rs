//! Command-line syntax. Parsing only: the handlers in `cmd/` validate and act.

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "alloctrace",
    version,
    about = "Trace every allocation of an unmodified program with eBPF, into Parquet",
    after_help = "Exit status: `record` in spawn mode exits with the traced command's status (128+N if a \
                  signal N ended it); otherwise 0 on success, 1 on error, 2 on a usage error."
)]
pub struct Cli {
    /// More diagnostics on stderr (-v: probe placement and progress, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors and warnings on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Record a trace: run COMMAND (or attach to --pid) and write every allocator call and
    /// address-space syscall to a trace directory (run.json + events/*.parquet).
    Record(RecordArgs),
    /// Reduce a trace into an interactive, self-contained HTML report (timeline, fragmentation
    /// over time, size and lifetime patterns, leaks, peak, GC) and summary.json.
    Report(ReportArgs),
    /// Put several traces side by side in one dashboard (the same workload in several languages,
    /// or one program under different allocators).
    Compare(CompareArgs),
    /// Resolve the trace's call stacks offline into TRACE/frames.parquet: module and offset of
    /// every address, checked by build id, then function, source file and line (ELF symbols,
    /// DWARF with inlined frames, separate debug files, Go's .gopclntab), names demangled.
    Symbolize(SymbolizeArgs),
    /// Export the allocation stacks to a profile viewer: folded stacks (flamegraph.pl, inferno),
    /// pprof (go tool pprof) or speedscope.
    Export(ExportArgs),
}

#[derive(Args)]
#[command(
    after_help = "Every frame gets a status in frames.parquet: ok, no_symbols, build_id_mismatch (the file \
                  on disk is not the one that was traced: left unsymbolized, never guessed), \
                  missing_file, stripped (shown as module+offset) or unmapped."
)]
pub struct SymbolizeArgs {
    /// The trace directory written by `record`.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    /// Where separate debug files are looked up by build id (DIR/.build-id/ab/cdef….debug) and
    /// debug link; may be repeated.
    #[arg(
        long = "debug-dir",
        value_name = "DIR",
        default_value = "/usr/lib/debug"
    )]
    pub debug_dirs: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// `main;f;malloc 4096` lines for flamegraph.pl and inferno.
    Folded,
    /// gzipped pprof profile.proto for `go tool pprof`.
    Pprof,
    /// speedscope JSON (https://www.speedscope.app).
    Speedscope,
}

#[derive(Args)]
#[command(
    after_help = "pprof and speedscope files carry every measure: alloc_objects, alloc_space, inuse_objects and \
                  inuse_space (live at the end), peak_inuse_objects and peak_inuse_space (live at the \
                  live-bytes peak); pprof shows alloc_space unless given -sample_index=NAME. A trace not \
                  yet symbolized is symbolized in memory first.\n\n\
                  Examples:\n  alloctrace export trace/ --format folded -o - | inferno-flamegraph > alloc.svg\n  \
                  alloctrace export trace/ --format pprof -o heap.pb.gz && go tool pprof -top heap.pb.gz"
)]
pub struct ExportArgs {
    /// The trace directory written by `record`.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    /// Profile format (folded stacks for flamegraph.pl/inferno, pprof for `go tool pprof`,
    /// speedscope JSON).
    #[arg(
        long,
        value_enum,
        required_unless_present = "dataset",
        conflicts_with = "dataset"
    )]
    pub format: Option<ExportFormat>,
    /// Instead of a profile, add the trace to a Hive-style dataset under DIR
    /// (DIR/host=H/run=R/events/*.parquet, sorted by pid and time, with row-group statistics
    /// so engines prune by time and pid). See docs/datasets.md.
    #[arg(long, value_name = "DIR")]
    pub dataset: Option<PathBuf>,
    /// Dataset only: the `host=` partition (default: the trace's hostname).
    #[arg(long, requires = "dataset")]
    pub host: Option<String>,
    /// Dataset only: the `run=` partition (default: UTC start time and pid).
    #[arg(long, requires = "dataset")]
    pub run: Option<String>,
    /// Output file (default: TRACE/profile.folded, TRACE/profile.pb.gz or
    /// TRACE/profile.speedscope.json); `-` writes to stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Folded only: the weight of each stack. `bytes` (= alloc_space, the default) or `count`
    /// (= alloc_objects), or any pprof measure name.
    #[arg(long, value_name = "MEASURE", default_value = "bytes", value_parser = [
        "bytes", "count", "alloc_space", "alloc_objects", "inuse_space", "inuse_objects",
        "peak_inuse_space", "peak_inuse_objects",
    ])]
    pub value: String,
    /// Folded only: name frames `function (file:line)` instead of `function`.
    #[arg(long)]
    pub lines: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The trace directory written by `record`.
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    /// Where to write the HTML report (default: TRACE/report.html).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Where to write the headline numbers as JSON (default: TRACE/summary.json).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Report on one process of the trace only (a trace of a process tree holds every
    /// descendant's rows under its own pid; processes.parquet lists them).
    #[arg(long, value_name = "PID", value_parser = parse_pid)]
    pub pid: Option<u32>,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Trace directories to compare (one or more); `TRACE:PID` compares one process of a
    /// trace.
    #[arg(value_name = "TRACE", required = true, num_args = 1..)]
    pub traces: Vec<PathBuf>,
    /// Where to write the dashboard.
    #[arg(short, long, value_name = "FILE", default_value = "dashboard.html")]
    pub output: PathBuf,
}

#[derive(Args)]
#[command(
    after_help = "Examples:\n  sudo alloctrace record -o trace/ -- ./prog arg1 arg2\n  sudo alloctrace record -o trace/ -p 1234\n\n\
                  Run as root (sudo): loading eBPF programs needs CAP_BPF and CAP_PERFMON. Under sudo the \
                  command runs as the invoking user, and the trace directory is given to that user.\n\
                  Ctrl-C (or SIGTERM) stops recording and closes the trace cleanly; in spawn mode the \
                  signal is then passed on to the command, and a second Ctrl-C exits at once."
)]
pub struct RecordArgs {
    /// Trace directory to create (default: ./alloctrace.<command>.<UTC time>). Must be empty or
    /// absent unless --force.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Replace a trace already in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Attach to this running process (all its threads) until Ctrl-C or its exit, instead of
    /// running a command.
    #[arg(short, long, value_name = "PID", conflicts_with = "command", value_parser = parse_pid)]
    pub pid: Option<u32>,
    /// Ring-buffer size in MiB (rounded up to a power of two). Events that find it full are
    /// counted as lost and reported; raise it if any are.
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub ring_mb: u32,
    /// Close the current Parquet segment after this many MiB; a killed tracer loses at most
    /// the open segment.
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_mb: u64,
    /// ... or after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_secs: u64,
    /// Event categories to record, comma-separated: `alloc` (allocator calls, with their
    /// stacks), `syscalls` (mmap, munmap, mremap, brk, mprotect, madvise), `gc` (Go GC cycles
    /// and stop-the-world pauses, CPython collections), `rss` (resident memory, sampled every
    /// --rss-interval). `--events gc,rss` is the cheap mode: durations, GC figures and memory
    /// of a run that is barely slowed down (docs/benchmarks.md).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "alloc,syscalls,gc,rss",
          value_parser = ["alloc", "syscalls", "gc", "rss"])]
    pub events: Vec<String>,
    /// Resident-memory sampling period, in milliseconds (the `rss` category).
    #[arg(long, value_name = "MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub rss_interval: u64,
    /// Trace the top process only: not the processes it starts (forks, and the programs they
    /// exec). By default every descendant is traced, each under its own pid
    /// (processes.parquet lists them).
    #[arg(long)]
    pub no_follow: bool,
    /// Exit only once every probe is detached. By default alloctrace exits as soon as the trace
    /// is on disk and a background process releases the probes, which takes the kernel
    /// ~0.1 s a probe (seconds for a Go or libc trace): until then, a program started from the
    /// traced files still hits them and runs slower. Use this before timing such a program, or
    /// tracing it again, right after.
    #[arg(long)]
    pub wait_detach: bool,
    /// Do not record mmap/munmap/mremap/brk/mprotect/madvise (same as leaving `syscalls` out
    /// of --events).
    #[arg(long)]
    pub no_syscalls: bool,
    /// Do not capture the call stack of each allocation (on by default; see
    /// docs/benchmarks.md for what stacks cost per event).
    #[arg(long, overrides_with = "stacks")]
    pub no_stacks: bool,
    /// For CPython: also probe the public PyObject_*/PyMem_* functions, so rows tell the `obj`
    /// and `mem` domains apart (pymalloc serves both through the same functions). Their
    /// breakpoints are single-stepped: each allocation costs ~10 µs more.
    #[arg(long)]
    pub python_domains: bool,
    /// For CPython 3.11, 3.12 and 3.13: also capture the Python stack of each allocation (function, file,
    /// line per frame; native frames are then cut to the allocator and its caller). Off by
    /// default: deep, varied Python code has more distinct stacks than the stack map holds, and
    /// the walk costs up to a few µs per allocation (docs/stacks.md, docs/benchmarks.md).
    #[arg(long, conflicts_with = "no_stacks")]
    pub python_frames: bool,
    /// Capture the call stack of each allocation (the default).
    #[arg(long, overrides_with = "no_stacks")]
    pub stacks: bool,
    /// The command to run, with its arguments (after `--`).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        required_unless_present = "pid"
    )]
    pub command: Vec<OsString>,
}

fn parse_pid(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!("`{s}` is not a process id")),
        Ok(pid) => Ok(pid),
    }
}
