//! `alloctrace record`.

use std::{io::IsTerminal as _, path::PathBuf, time::Duration};

use alloctrace::record::{
    RecordOptions, Target,
    live::{bytes, thousands},
    record,
};
use trace_format::write::WriterOptions;

use crate::cli::RecordArgs;

/// The invoking user's ids when run through sudo as root.
fn sudo_caller() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    (uid != 0).then_some((uid, gid))
}

fn default_output(args: &RecordArgs) -> PathBuf {
    let name = match (&args.pid, args.command.first()) {
        (Some(pid), _) => format!("pid{pid}"),
        (None, Some(cmd)) => PathBuf::from(cmd)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "trace".into()),
        (None, None) => "trace".into(),
    };
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    PathBuf::from(format!("alloctrace.{name}.{stamp}"))
}

pub fn run(args: RecordArgs, quiet: bool) -> anyhow::Result<i32> {
    let output = args.output.clone().unwrap_or_else(|| default_output(&args));
    let caller = sudo_caller();
    let target = match args.pid {
        Some(pid) => Target::Attach { pid },
        None => Target::Spawn {
            command: args.command.clone(),
            run_as: caller,
        },
    };
    let wants = |category: &str| args.events.iter().any(|e| e == category);
    let options = RecordOptions {
        force: args.force,
        ring_bytes: args.ring_mb.saturating_mul(1 << 20),
        writer: WriterOptions {
            segment_max_bytes: usize::try_from(args.segment_mb << 20).unwrap_or(usize::MAX),
            segment_max_duration: Duration::from_secs(args.segment_secs),
            ..WriterOptions::default()
        },
        alloc: wants("alloc"),
        syscalls: wants("syscalls") && !args.no_syscalls,
        gc: wants("gc"),
        rss_interval: wants("rss").then(|| Duration::from_millis(args.rss_interval)),
        stacks: !args.no_stacks,
        python_api: args.python_domains,
        python_frames: args.python_frames,
        live: !quiet && std::io::stderr().is_terminal(),
        owner: caller,
        announce: !quiet,
        follow: !args.no_follow,
        ..RecordOptions::new(output.clone(), target)
    };
    let mut outcome = record(&options)?;
    // Everything is on disk; unless asked to, do not make the user wait for the kernel to
    // release the probes.
    if let Some(programs) = outcome.programs.take() {
        if args.wait_detach || alloctrace::sys::release_descriptors_in_background().is_err() {
            programs.detach_all();
        } else {
            std::mem::forget(programs);
        }
    }
    // Name the stack frames now, while the traced files are certainly on disk.
    if options.stacks && options.alloc {
        match analysis::symbolize::symbolize_trace(&output) {
            Ok(summary) => {
                if !quiet {
                    eprintln!("{summary}");
                }
            }
            Err(analysis::symbolize::SymbolizeError::NoStacks { .. }) => {}
            Err(err) => log::warn!(
                "symbolization failed: {err}; run `alloctrace symbolize {}` later",
                output.display()
            ),
        }
        // frames.parquet is new: hand the trace to the sudo caller again.
        if let Some((uid, gid)) = caller {
            alloctrace::record::output::give_to(&output, uid, gid);
        }
    }
    let run = &outcome.run;
    let s = &outcome.stats;
    let secs = (run
        .clock
        .monotonic_end_ns
        .saturating_sub(run.clock.monotonic_start_ns)) as f64
        / 1e9;
    let per_event = if run.events_written > 0 {
        outcome.bytes_on_disk as f64 / run.events_written as f64
    } else {
        0.0
    };
    if !quiet {
        eprintln!(
            "alloctrace: {} events ({} alloc, {} free, {} realloc, {} other) from {} in {secs:.2} s, {} lost; peak live {}; {} in {} blocks live at the end{}; trace {} ({}, {per_event:.1} B/event)",
            thousands(run.events_written),
            thousands(s.allocs),
            thousands(s.frees),
            thousands(s.reallocs),
            thousands(s.other),
            if s.processes == 1 {
                "1 process".to_owned()
            } else {
                format!("{} processes", s.processes)
            },
            thousands(run.lost_total),
            bytes(s.peak_live_bytes),
            bytes(s.live_bytes),
            thousands(s.live_blocks() as u64),
            collected_note(s.collected_allocs),
            output.display(),
            bytes(outcome.bytes_on_disk),
        );
    }
    if run.lost_total > 0 {
        eprintln!(
            "alloctrace: warning: {} events lost ({} with the ring buffer full: try --ring-mb); per-cause counts are in {}/run.json",
            thousands(run.lost_total),
            thousands(run.counters.get("lost_ring_full").copied().unwrap_or(0)),
            output.display()
        );
    }
    Ok(outcome.exit.shell_code())
}

/// Go's allocations are left out of the live figures: its garbage collector frees them unseen.
fn collected_note(collected: u64) -> String {
    if collected == 0 {
        String::new()
    } else {
        format!(
            " (without {} Go allocations, freed by its GC: its heap is in the gc_end rows)",
            thousands(collected)
        )
    }
}
