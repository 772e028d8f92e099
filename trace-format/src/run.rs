//! `run.json`: what was traced, how, and what was lost. Written by `alloctrace record` at start,
//! at every segment roll and at the end; read by the reports.
//!
//! ```no_run
//! let run = trace_format::run::RunInfo::read(std::path::Path::new("trace")).unwrap();
//! println!("{} events lost", run.lost_total);
//! ```

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::schema::RUN_JSON;

/// How the recording ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Still recording, or the tracer was killed before it could finish.
    #[default]
    Running,
    /// The target exited; everything was flushed.
    Complete,
    /// Stopped by Ctrl-C or SIGTERM; everything captured up to then was flushed.
    Interrupted,
    /// Stopped by an error (see `warnings`): the closed segments listed are readable, rows
    /// after the last of them are lost.
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    /// CLOCK_MONOTONIC at the start (the clock of `ts_ns`).
    pub monotonic_start_ns: u64,
    /// CLOCK_REALTIME read right after `monotonic_start_ns`.
    pub realtime_start_ns: u64,
    /// CLOCK_MONOTONIC when recording stopped; 0 while running.
    pub monotonic_end_ns: u64,
}

/// How the traced process ended (spawn mode, or when it exited while attached).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

/// One attached probe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Id carried by the events (the BPF cookie).
    pub id: u32,
    /// The `func` value of its rows.
    pub func: String,
    /// `native`, `go` or `python`.
    pub runtime: String,
    /// How it is attached: `uprobe`, `uprobe+uretprobe`, `tracepoint`.
    pub kind: String,
    /// The ELF symbol (or tracepoint name), and the other symbols at the same address.
    pub symbol: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// File the probe is in; empty for tracepoints.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// Symbol value (virtual address in the ELF file).
    #[serde(default)]
    pub address: u64,
    /// Offset of the probed instruction from the symbol.
    #[serde(default)]
    pub probe_offset: u64,
    /// File offset the uprobe is attached at.
    #[serde(default)]
    pub file_offset: u64,
    /// Why the probe sits where it does (instruction and whether the kernel emulates it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placement: String,
    /// Rows this probe wrote. Calls it saw but folded into an outer call (operator new →
    /// malloc) or skipped (free(NULL)) are not rows; the run's `counters` count those.
    #[serde(default)]
    pub events: u64,
}

/// A file mapped by the target when recording started (or later, for dlopen).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub path: String,
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub perms: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub build_id: String,
}

/// CPU time and peak resident set size of a process, as the kernel accounted them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub max_rss_bytes: u64,
}

impl Usage {
    /// User plus system CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        self.cpu_user_s + self.cpu_system_s
    }
}

/// The event categories `alloctrace record --events` chooses from, as run.json's `events`
/// names them.
pub mod category {
    /// Allocator calls (malloc & co., Go's and CPython's allocators), with their stacks.
    pub const ALLOC: &str = "alloc";
    /// mmap, munmap, mremap, brk, mprotect, madvise.
    pub const SYSCALLS: &str = "syscalls";
    /// GC cycles and stop-the-world pauses (Go), collections (CPython).
    pub const GC: &str = "gc";
    /// Resident-memory samples (`rss` rows).
    pub const RSS: &str = "rss";
    /// Every category, in the order run.json lists them.
    pub const ALL: [&str; 4] = [ALLOC, SYSCALLS, GC, RSS];
}

/// How resident memory was sampled (the `rss` category).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RssSampling {
    /// The sampling period.
    pub interval_ns: u64,
    /// What each sample reads (see docs/schema.md).
    pub source: String,
    /// `rss` rows written.
    pub samples: u64,
    /// Periods skipped because the sampler was late (the machine was busy): the rows around
    /// them are further apart than `interval_ns`.
    pub skipped: u64,
}

/// Everything `run.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema_version: u32,
    pub tool: Tool,
    /// `spawn` or `attach`.
    pub mode: String,
    /// The event categories recorded ([`category`]). Empty in traces written before
    /// `record --events` existed: those hold alloc, gc and (unless `--no-syscalls`) syscalls
    /// rows, never rss rows.
    #[serde(default)]
    pub events: Vec<String>,
    /// Resident-memory sampling, when the `rss` category was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss: Option<RssSampling>,
    /// The command line in spawn mode.
    #[serde(default)]
    pub command: Vec<String>,
    pub pids: Vec<u32>,
    pub exe: String,
    pub kernel: String,
    pub arch: String,
    #[serde(default)]
    pub hostname: String,
    pub clock: Clock,
    pub status: Status,
    #[serde(default)]
    pub exit: Option<Exit>,
    pub probes: Vec<Probe>,
    /// Every eBPF counter, summed over CPUs (see `docs/schema.md` for their meaning).
    pub counters: BTreeMap<String, u64>,
    /// Ring-buffer overflows per CPU.
    pub lost_per_cpu: Vec<u64>,
    /// All rows known to be missing: ring overflow plus the other loss counters.
    pub lost_total: u64,
    pub events_written: u64,
    /// Segment files, relative to the trace directory, in order.
    pub segments: Vec<String>,
    /// The target's break at the start (`start_brk` in /proc/PID/stat): the brk heap begins here.
    #[serde(default)]
    pub start_brk: u64,
    #[serde(default)]
    pub modules: Vec<Module>,
    /// Facts about language runtimes found in the target (Go version, Python build, ...).
    #[serde(default)]
    pub runtimes: BTreeMap<String, serde_json::Value>,
    /// The workload's own counters, when it printed them (see the targets' JSON line).
    #[serde(default)]
    pub workload: Option<serde_json::Value>,
    /// The tracer's own CPU time and memory, filled in at the end (its work after writing
    /// run.json, such as printing the summary and exiting, is not in it).
    #[serde(default)]
    pub tracer: Option<Usage>,
    /// The started command's own CPU time and peak RSS, from `wait4` when the tracer reaped it
    /// (spawn mode): what the kernel charged to it and to the descendants it reaped, the
    /// probes' breakpoints and eBPF programs included, the tracer's work not. Absent in attach
    /// mode (the process is not the tracer's child) and when the command was not reaped (it
    /// still ran when the recording stopped, or ended before its probes were attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Usage>,
    /// Things the user should know about this trace (fallback probe placements, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Reading `run.json` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunInfoError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid alloctrace run.json", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Clock {
    /// The wall-clock (CLOCK_REALTIME) time of a monotonic `ts_ns`, when both start readings
    /// were taken.
    pub fn wall_ns(&self, ts_ns: u64) -> Option<u64> {
        (self.realtime_start_ns > 0 && self.monotonic_start_ns > 0).then(|| {
            (i128::from(ts_ns) + i128::from(self.realtime_start_ns)
                - i128::from(self.monotonic_start_ns))
            .max(0) as u64
        })
    }
}

impl RunInfo {
    /// Reads `run.json` from a trace directory.
    pub fn read(trace_dir: &Path) -> Result<RunInfo, RunInfoError> {
        let path = trace_dir.join(RUN_JSON);
        let text = fs::read_to_string(&path).map_err(|source| RunInfoError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| RunInfoError::Parse { path, source })
    }

    /// Writes `run.json` atomically (temporary file, then rename), so a reader never sees a
    /// half-written file even if the tracer is killed.
    pub fn write(&self, trace_dir: &Path) -> io::Result<()> {
        let path = trace_dir.join(RUN_JSON);
        let tmp = trace_dir.join(format!("{RUN_JSON}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        fs::write(&tmp, text + "\n")?;
        fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that run.json survives a write → read round trip.
    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunInfo {
            schema_version: 1,
            mode: "spawn".into(),
            pids: vec![42],
            status: Status::Interrupted,
            lost_per_cpu: vec![0, 3],
            lost_total: 3,
            ..RunInfo::default()
        };
        run.counters.insert("lost_ring_full".into(), 3);
        run.write(dir.path()).unwrap();
        assert_eq!(RunInfo::read(dir.path()).unwrap(), run);
    }

    /// Check that a damaged run.json is an error, not a panic.
    #[test]
    fn damaged() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(RUN_JSON), "{\"schema_version\": ").unwrap();
        let err = RunInfo::read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a valid alloctrace run.json"));
    }
}
