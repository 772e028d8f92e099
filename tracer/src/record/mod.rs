//! `alloctrace record`: run or attach to a process, write every allocator call and
//! address-space syscall to a trace directory.
//!
//! ```no_run
//! use alloctrace::record::{RecordOptions, Target, record};
//! let options = RecordOptions::new("trace".into(), Target::Spawn { command: vec!["./prog".into()], run_as: None });
//! let outcome = record(&options).unwrap();
//! println!("{} events", outcome.run.events_written);
//! ```

mod attach;
pub mod decode;
mod error;
pub mod live;
mod options;
pub mod output;
mod process;
mod rows;
pub mod rss;
mod runinfo;
mod session;
mod signals;
pub mod spawn;
mod stacks;
pub mod tree;

use std::{ffi::OsString, fs, os::fd::AsFd, path::Path};

use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{Signal, kill},
        wait::waitpid,
    },
    unistd::Pid,
};
use trace_format::{run::Status, write::TraceWriter};
use tracer_common::process::flags;

use crate::{
    ebpf::{AttachError, LoadOptions, Programs},
    sys,
};
use attach::Attacher;
pub use error::RecordError;
use error::io_err;
use live::{LiveLine, Stats};
pub use options::{Outcome, RecordOptions, Target, TargetExit};
pub use process::is_privileged;
use session::{Recording, take_map};
use spawn::{LoaderOutcome, LoaderStep, SpawnError};

/// Records until the target exits or a stop signal arrives.
pub fn record(options: &RecordOptions) -> Result<Outcome, RecordError> {
    if !is_privileged() {
        return Err(RecordError::NotPrivileged);
    }
    if let Target::Attach { pid } = options.target
        && !Path::new(&format!("/proc/{pid}")).exists()
    {
        return Err(RecordError::NoSuchProcess { pid });
    }
    if let Target::Attach { pid } = options.target
        && process::has_exited(pid)
    {
        return Err(RecordError::ProcessExited { pid });
    }
    let spawn_plan = match &options.target {
        Target::Spawn { command, run_as } => {
            let first = command.first().ok_or_else(|| SpawnError::NotFound {
                program: OsString::new(),
            })?;
            Some((spawn::resolve(first)?, command, *run_as))
        }
        Target::Attach { .. } => None,
    };
    output::prepare(options)?;
    let phase = std::time::Instant::now();
    let mut programs = Programs::load(LoadOptions {
        ring_bytes: options.ring_bytes,
    })?;
    log::debug!("eBPF programs loaded in {:?}", phase.elapsed());
    let ring = programs.take_ring()?;
    let counters = take_map(&mut programs, tracer_common::maps::COUNTERS)?;
    let stack_map = take_map(&mut programs, tracer_common::maps::STACKS).ok();
    let go_calls = take_map(&mut programs, tracer_common::maps::GO_CALLS).ok();
    let signals = signals::Signals::install().map_err(io_err("installing signal handlers"))?;

    // Start (stopped) or find the target, and attach what is mapped now.
    let (pid, stopped) = match (&spawn_plan, &options.target) {
        (Some((program, command, run_as)), _) => {
            let stopped = spawn::spawn_stopped(program, &command[0], &command[1..], *run_as)?;
            (stopped.pid, Some(stopped))
        }
        (None, Target::Attach { pid }) => (*pid, None),
        (None, Target::Spawn { .. }) => {
            return Err(SpawnError::NotFound {
                program: OsString::new(),
            }
            .into());
        }
    };
    let kill_child = |pid: u32| {
        if stopped.is_some() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid as i32), None);
        }
    };
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return Err(RecordError::NoSuchProcess { pid }),
    };
    let mut attacher = Attacher::new(pid, options.syscalls, options.stacks, options.follow);
    attacher.python_api = options.python_api;
    attacher.python_frames_wanted = options.python_frames;
    attacher.alloc = options.alloc;
    attacher.gc = options.gc;
    // Resident memory from the start: the process has exec'd (or is the one attached to), so
    // its memory is its own, not the tracer's it was forked from.
    let sampler = match options.rss_interval {
        Some(interval) => Some(
            rss::RssSampler::start(interval, &[pid])
                .map_err(io_err("starting the resident-memory sampler"))?,
        ),
        None => None,
    };
    // Following the tree, the top process's children inherit its flags; it is held at exec and
    // at new code once it runs on its own (while the loader runs under ptrace, spawn mode
    // attaches the libraries itself).
    let top_flags = if options.follow {
        flags::TRACED | flags::FOLLOW
    } else {
        flags::TRACED
    };
    let running_flags = if options.follow {
        top_flags | flags::HOLD
    } else {
        top_flags
    };
    programs.set_target(
        pid,
        if stopped.is_some() {
            top_flags
        } else {
            running_flags
        },
    )?;
    programs.attach_tree()?;
    let mut processes = tree::ProcessTable::default();
    match &stopped {
        Some(_) => processes.start(
            pid,
            Some(std::process::id()),
            process::now(nix::time::ClockId::CLOCK_MONOTONIC),
        ),
        None => processes.start(
            pid,
            tree::parent_of(pid),
            tree::start_time_ns(pid).unwrap_or(0),
        ),
    }
    if options.syscalls {
        programs.attach_syscalls()?;
    }
    log::debug!(
        "syscall tracepoints attached {:?} after start",
        phase.elapsed()
    );
    let mut run = runinfo::base_run_info(options, pid);
    let loader_exit = match &stopped {
        Some(stopped) => {
            let step = |step: LoaderStep| -> Result<(), RecordError> {
                match step {
                    LoaderStep::Mapped => attacher.scan(&mut programs).map(drop)?,
                    // Before the program's first instruction: from now on its new code is held.
                    LoaderStep::Entry => programs.set_target(pid, running_flags)?,
                }
                Ok(())
            };
            match spawn::run_loader(stopped, step) {
                Ok(Ok(LoaderOutcome::Released)) => None,
                Ok(Ok(LoaderOutcome::Exited(status))) => Some(status),
                Ok(Err(err)) => {
                    kill_child(pid);
                    return Err(err.into());
                }
                Err(err) => {
                    kill_child(pid);
                    return Err(err);
                }
            }
        }
        None => {
            attacher.scan(&mut programs).map_err(|err| match err {
                AttachError::ProcessGone { pid } => RecordError::ProcessExited { pid },
                other => other.into(),
            })?;
            if options.follow {
                // Its descendants already running are part of the tree too.
                for child in tree::descendants(pid) {
                    programs.set_target(child, running_flags)?;
                    processes.start(
                        child,
                        tree::parent_of(child),
                        tree::start_time_ns(child).unwrap_or(0),
                    );
                    match attacher.scan_process(&mut programs, child) {
                        Ok(_) | Err(AttachError::ProcessGone { .. }) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            None
        }
    };
    if options.alloc && loader_exit.is_none() && attacher.table.uprobe_count() == 0 {
        let stripped = attacher.exe_is_stripped();
        kill_child(pid);
        return Err(RecordError::NoAllocators {
            exe: run.exe.clone(),
            stripped,
        });
    }
    // The exe path is known for sure once exec has happened.
    if run.exe.is_empty() {
        run.exe = fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
    }
    run.events = options.categories();
    if !options.alloc && options.gc && loader_exit.is_none() && attacher.table.uprobe_count() == 0 {
        let message = "no GC probes: no Go or CPython runtime found (gc rows need one)";
        log::warn!("{message}");
        attacher.warnings.push(message.to_owned());
    }
    log::info!(
        "{} probes attached to pid {pid}",
        attacher.table.uprobe_count()
    );
    log::debug!("target released {:?} after start", phase.elapsed());
    if options.announce {
        eprintln!(
            "alloctrace: recording pid {pid} ({} probes) into {}",
            attacher.table.uprobe_count(),
            options.output.display()
        );
    }

    let writer = TraceWriter::create(
        &options.output,
        options.writer.clone(),
        runinfo::footer_metadata(&run),
    )?;
    let mut rec = Recording {
        options,
        programs: Some(programs),
        ring,
        counters,
        probe_events: vec![0; tracer_common::probe::MAX_PROBES as usize],
        attacher,
        writer,
        run,
        stats: Stats::default(),
        types: rows::TypeCache::default(),
        stacks: stacks::StackTable::default(),
        python_names: stacks::PythonNames::default(),
        gc_generation: rustc_hash::FxHashMap::default(),
        stack_map,
        go_calls,
        live: LiveLine::new(options.live),
        rescan: Vec::new(),
        processes,
        held: Vec::new(),
        finalizing: Vec::new(),
        released: 0,
        undecodable: 0,
        rss: sampler,
    };
    rec.write_run_info(None)?;

    // The event loop: drain on a timer or when the eBPF side asks (a batch is waiting or a
    // process is held), stop when the whole tree has exited or a signal arrives.
    let mut target_exited = loader_exit.is_some();
    let mut stopped_by = None;
    let looped = (|| -> Result<(), RecordError> {
        loop {
            if target_exited {
                rec.end_vanished();
                if rec.processes.live_count() == 0 {
                    break;
                }
            }
            let (pid_ready, signal_ready) = {
                let ring_fd = rec.ring.as_fd();
                let signal_fd = signals.fd();
                let mut fds = vec![
                    PollFd::new(ring_fd, PollFlags::POLLIN),
                    PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
                ];
                // Once the top process has exited its pidfd stays readable: stop polling it.
                if !target_exited {
                    fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                }
                let _ = poll(&mut fds, PollTimeout::from(100u16));
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                (fds.get(2).is_some_and(ready), ready(&fds[1]))
            };
            rec.drain()?;
            rec.release_held()?;
            if signal_ready || signals.received().is_some() {
                stopped_by = signals.received();
                break;
            }
            target_exited |= pid_ready;
            if rec.writer.segment_due() {
                rec.writer.roll()?;
                rec.write_side_tables()?;
                rec.write_run_info(None)?;
            }
            let lost = rec.lost_so_far();
            rec.live.tick(&rec.stats, lost, pid);
        }
        // The target has exited or the recording was stopped: what is in the ring now is
        // everything up to the stop, and so are the samples once the sampler has stopped.
        if let Some(sampler) = rec.rss.as_mut() {
            sampler.stop();
        }
        rec.drain()?;
        rec.release_held()
    })();
    if let Err(err) = looped {
        // Say in run.json why the trace ends here (its closed segments stay readable), let the
        // command we started run to its end untraced, then report the error.
        rec.live.clear();
        rec.fail(&err);
        drop(rec.programs.take());
        if stopped.is_some() {
            let _ = waitpid(Pid::from_raw(pid as i32), None);
        }
        if let Some((uid, gid)) = options.owner {
            output::give_to(&options.output, uid, gid);
        }
        return Err(err);
    }
    // The probes stay attached until the caller drops `programs`.
    let programs = rec.programs.take();
    rec.live.clear();
    let status = if stopped_by.is_some() {
        Status::Interrupted
    } else {
        Status::Complete
    };
    rec.writer.roll()?;
    rec.write_side_tables()?;
    let segments = rec.writer.segments().to_vec();
    let bytes_on_disk = output::bytes_on_disk(&options.output, &segments);
    rec.update_run_info(Some(status));
    rec.run.tracer = process::own_usage();
    rec.run.segments = segments;
    signals.exit_on_next();

    // How did the target end?
    let exit = match (loader_exit, &stopped) {
        (Some(status), _) => process::wait_status_exit(status),
        (None, Some(_)) => {
            if let Some(sig) = stopped_by {
                // Like sudo and timeout: pass the stop signal on to the command we started.
                let _ = kill(Pid::from_raw(pid as i32), Signal::try_from(sig).ok());
            }
            let (exit, usage) = process::reap(pid);
            rec.run.target = usage;
            exit
        }
        (None, None) if target_exited => TargetExit::Exited,
        (None, None) => TargetExit::Running,
    };
    rec.run.exit = exit.run_exit();
    rec.run
        .write(&options.output)
        .map_err(io_err("writing run.json"))?;
    if let Some((uid, gid)) = options.owner {
        output::give_to(&options.output, uid, gid);
    }
    Ok(Outcome {
        programs,
        run: std::mem::take(&mut rec.run),
        stats: std::mem::take(&mut rec.stats),
        exit,
        bytes_on_disk,
        stopped_by,
    })
}
