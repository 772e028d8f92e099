//! What to record, and what came of it: the library's API types.

use std::{ffi::OsString, path::PathBuf};

use trace_format::{
    run::{Exit, RunInfo},
    write::WriterOptions,
};

use super::live::Stats;
use crate::ebpf::Programs;

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    /// Run a command (argv), optionally as another user (uid, gid).
    Spawn {
        command: Vec<OsString>,
        run_as: Option<(u32, u32)>,
    },
    /// Attach to a running process.
    Attach { pid: u32 },
}

#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub output: PathBuf,
    pub target: Target,
    /// Replace an existing trace in `output`.
    pub force: bool,
    pub ring_bytes: u32,
    pub writer: WriterOptions,
    /// Record allocator calls (the `alloc` category).
    pub alloc: bool,
    /// Also record mmap/munmap/mremap/brk/mprotect/madvise.
    pub syscalls: bool,
    /// Record GC cycles, stop-the-world pauses and collections (the `gc` category).
    pub gc: bool,
    /// Sample resident memory at this period (the `rss` category); `None`: do not.
    pub rss_interval: Option<std::time::Duration>,
    /// Capture the user call stack of every allocation.
    pub stacks: bool,
    /// Also probe CPython's public allocator functions, to tell the `obj` and `mem` domains
    /// apart (their breakpoints are single-stepped: slower).
    pub python_api: bool,
    /// With `stacks`, also capture the Python frames of CPython 3.11–3.13.
    pub python_frames: bool,
    /// Draw the live status line (stderr is a terminal).
    pub live: bool,
    /// Give the output directory to this user (the sudo caller) when done.
    pub owner: Option<(u32, u32)>,
    /// Say on stderr when the probes are in place ("alloctrace: recording pid N ...").
    pub announce: bool,
    /// Trace the target's descendants too (forks and execs); off: the top process only.
    pub follow: bool,
}

impl RecordOptions {
    /// run.json's `events`: the categories recorded.
    pub fn categories(&self) -> Vec<String> {
        use trace_format::run::category;
        [
            (self.alloc, category::ALLOC),
            (self.syscalls, category::SYSCALLS),
            (self.gc, category::GC),
            (self.rss_interval.is_some(), category::RSS),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect()
    }

    pub fn new(output: PathBuf, target: Target) -> RecordOptions {
        RecordOptions {
            output,
            target,
            force: false,
            ring_bytes: tracer_common::maps::DEFAULT_RING_BYTES,
            writer: WriterOptions::default(),
            alloc: true,
            syscalls: true,
            gc: true,
            rss_interval: Some(super::rss::DEFAULT_INTERVAL),
            stacks: true,
            python_api: false,
            python_frames: false,
            live: false,
            owner: None,
            announce: false,
            follow: true,
        }
    }
}

/// How the traced process ended, as far as alloctrace knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetExit {
    Code(i32),
    Signal(i32),
    /// Attach mode: the process exited, and its status went to its parent, not to alloctrace.
    Exited,
    /// Recording stopped (Ctrl-C in attach mode) while the process kept running.
    Running,
}

impl TargetExit {
    /// The exit status a shell would report for it (0 when alloctrace cannot know it).
    pub fn shell_code(self) -> i32 {
        match self {
            TargetExit::Code(code) => code,
            TargetExit::Signal(sig) => 128 + sig,
            TargetExit::Exited | TargetExit::Running => 0,
        }
    }

    /// `run.json`'s `exit`: absent while the process runs, `{}` when it exited with a status
    /// alloctrace could not see.
    pub fn run_exit(self) -> Option<Exit> {
        match self {
            TargetExit::Code(code) => Some(Exit {
                code: Some(code),
                signal: None,
            }),
            TargetExit::Signal(sig) => Some(Exit {
                code: None,
                signal: Some(sig),
            }),
            TargetExit::Exited => Some(Exit::default()),
            TargetExit::Running => None,
        }
    }
}

pub struct Outcome {
    /// The loaded programs, still attached in attach mode. Dropping them detaches every probe
    /// (slow: see `sys::release_descriptors_in_background`).
    pub programs: Option<Programs>,
    pub run: RunInfo,
    pub stats: Stats,
    pub exit: TargetExit,
    pub bytes_on_disk: u64,
    /// The signal that stopped the recording, if any.
    pub stopped_by: Option<i32>,
}
