//! The parts of `run.json` and of the segment footers known when recording starts.

use std::fs;

use nix::time::ClockId;
use parquet::file::metadata::KeyValue;
use trace_format::{
    run::{Clock, RunInfo, Tool},
    schema::{self, meta},
};

use super::{RecordOptions, Target, process};

pub(super) fn base_run_info(options: &RecordOptions, pid: u32) -> RunInfo {
    let uname = nix::sys::utsname::uname().ok();
    let monotonic = process::now(ClockId::CLOCK_MONOTONIC);
    let realtime = process::now(ClockId::CLOCK_REALTIME);
    let (mode, command) = match &options.target {
        Target::Spawn { command, .. } => (
            "spawn",
            command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        ),
        Target::Attach { .. } => ("attach", Vec::new()),
    };
    RunInfo {
        schema_version: schema::SCHEMA_VERSION,
        tool: Tool {
            name: "alloctrace".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        mode: mode.into(),
        command,
        pids: vec![pid],
        exe: fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        kernel: uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        arch: std::env::consts::ARCH.into(),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        clock: Clock {
            monotonic_start_ns: monotonic,
            realtime_start_ns: realtime,
            monotonic_end_ns: 0,
        },
        start_brk: process::start_brk(pid),
        ..RunInfo::default()
    }
}

pub(super) fn footer_metadata(run: &RunInfo) -> Vec<KeyValue> {
    let kv = |k: &str, v: String| KeyValue::new(k.to_owned(), v);
    vec![
        kv(meta::TOOL_VERSION, run.tool.version.clone()),
        kv(
            meta::PID,
            run.pids.first().copied().unwrap_or(0).to_string(),
        ),
        kv(meta::EXE, run.exe.clone()),
        kv(meta::ARCH, run.arch.clone()),
        kv(
            meta::MONOTONIC_START_NS,
            run.clock.monotonic_start_ns.to_string(),
        ),
        kv(
            meta::REALTIME_START_NS,
            run.clock.realtime_start_ns.to_string(),
        ),
    ]
}
