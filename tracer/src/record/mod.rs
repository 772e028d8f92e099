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
pub mod live;
mod signals;
pub mod spawn;
mod stacks;

use std::{
    ffi::OsString,
    fs, io,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use analysis::{
    run::{Clock, Exit, RunInfo, Status, Tool},
    schema::{self, meta},
    write::{Row, TraceWriter, WriteError, WriterOptions},
};
use aya::maps::{MapData, RingBuf};
use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{Signal, kill},
        wait::{WaitStatus, waitpid},
    },
    time::{ClockId, clock_gettime},
    unistd::Pid,
};
use parquet::file::metadata::KeyValue;
use tracer_common::{counter::Counter, event::EventKind};

use crate::{
    ebpf::{AttachError, LoadError, LoadOptions, Programs},
    probes, sys,
};
use attach::Attacher;
use decode::Event;
use live::{LiveLine, Stats};
use spawn::{LoaderOutcome, SpawnError};

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
    /// Also record mmap/munmap/mremap/brk/mprotect/madvise.
    pub syscalls: bool,
    /// Capture the user call stack of every allocation.
    pub stacks: bool,
    /// Also probe CPython's public allocator functions, to tell the `obj` and `mem` domains
    /// apart (their breakpoints are single-stepped: slower).
    pub python_api: bool,
    /// With `stacks`, also capture CPython 3.11's Python frames.
    pub python_frames: bool,
    /// Draw the live status line (stderr is a terminal).
    pub live: bool,
    /// Give the output directory to this user (the sudo caller) when done.
    pub owner: Option<(u32, u32)>,
    /// Say on stderr when the probes are in place ("alloctrace: recording pid N ...").
    pub announce: bool,
}

impl RecordOptions {
    pub fn new(output: PathBuf, target: Target) -> RecordOptions {
        RecordOptions {
            output,
            target,
            force: false,
            ring_bytes: tracer_common::maps::DEFAULT_RING_BYTES,
            writer: WriterOptions::default(),
            syscalls: true,
            stacks: true,
            python_api: false,
            python_frames: false,
            live: false,
            owner: None,
            announce: false,
        }
    }
}

/// How the traced process ended, as far as alloctrace knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetExit {
    Code(i32),
    Signal(i32),
    /// Recording stopped (Ctrl-C in attach mode) while the process kept running.
    Running,
}

impl TargetExit {
    /// The exit status a shell would report for it.
    pub fn shell_code(self) -> i32 {
        match self {
            TargetExit::Code(code) => code,
            TargetExit::Signal(sig) => 128 + sig,
            TargetExit::Running => 0,
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

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "alloctrace needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs: run it with sudo"
    )]
    NotPrivileged,
    #[error("output directory {} is not empty (choose another with -o, or pass --force to replace the trace in it)", path.display())]
    OutputNotEmpty { path: PathBuf },
    #[error("cannot write to output directory {}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} has exited")]
    ProcessExited { pid: u32 },
    #[error("{}", no_allocators_message(exe, *stripped))]
    NoAllocators { exe: String, stripped: bool },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("writing the trace")]
    Write(#[from] WriteError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn no_allocators_message(exe: &str, stripped: bool) -> String {
    if stripped {
        format!(
            "no allocator functions found in {exe} or its libraries: the binary is stripped (no symbol table); trace a build that keeps its symbols"
        )
    } else {
        format!(
            "no allocator functions (malloc, operator new, ...) found in {exe} or its libraries"
        )
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RecordError {
    let what = what.into();
    move |source| RecordError::Io { what, source }
}

/// Root, or CAP_BPF + CAP_PERFMON in the effective set.
pub fn is_privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    cap_eff & (1 << CAP_BPF) != 0 && cap_eff & (1 << CAP_PERFMON) != 0
}

fn prepare_output(options: &RecordOptions) -> Result<(), RecordError> {
    let path = &options.output;
    let output_err = |source| RecordError::Output {
        path: path.clone(),
        source,
    };
    if path.exists() {
        let mut entries = fs::read_dir(path).map_err(output_err)?;
        if entries.next().is_some() {
            if !options.force {
                return Err(RecordError::OutputNotEmpty { path: path.clone() });
            }
            let _ = fs::remove_dir_all(path.join(schema::EVENTS_DIR));
            let _ = fs::remove_file(path.join(schema::RUN_JSON));
        }
    }
    fs::create_dir_all(path).map_err(output_err)?;
    // Fail now, not after the target has run, if the directory is not writable.
    let probe = path.join(".alloctrace-write-test");
    fs::write(&probe, b"").map_err(output_err)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

fn now(clock: ClockId) -> u64 {
    clock_gettime(clock)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Whether the process is a zombie (exited, not yet reaped) or dead.
fn has_exited(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

/// `start_brk` (field 47 of /proc/PID/stat): where the brk heap starts.
fn start_brk(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    after_comm
        .split_whitespace()
        .nth(47 - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn base_run_info(options: &RecordOptions, pid: u32) -> RunInfo {
    let uname = nix::sys::utsname::uname().ok();
    let monotonic = now(ClockId::CLOCK_MONOTONIC);
    let realtime = now(ClockId::CLOCK_REALTIME);
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
        start_brk: start_brk(pid),
        ..RunInfo::default()
    }
}

fn footer_metadata(run: &RunInfo) -> Vec<KeyValue> {
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

/// Names of Go types seen in this trace, by (probe, type pointer).
#[derive(Default)]
struct TypeCache {
    names: rustc_hash::FxHashMap<(u32, u64), Option<String>>,
}

impl TypeCache {
    /// Resolves the type of a Go allocation row once.
    fn learn(&mut self, event: &Event, table: &attach::ProbeTable) {
        let Event::Alloc { header, event, .. } = event else {
            return;
        };
        let Some(types) = table.meta(header.probe).and_then(|m| m.types.as_ref()) else {
            return;
        };
        if event.arg != 0 {
            self.names
                .entry((header.probe, event.arg))
                .or_insert_with(|| types.type_name(event.arg));
        }
    }

    fn get(&self, probe: u32, type_ptr: u64) -> Option<&str> {
        self.names.get(&(probe, type_ptr))?.as_deref()
    }
}

/// Puts a runtime event's value into the column its role names.
fn fill_role<'a>(row: &mut Row<'a>, role: probes::ValueRole, value: u64) {
    use probes::ValueRole;
    match role {
        ValueRole::Unused => {}
        ValueRole::GcCycle { offset } => row.gc_cycle = Some(value.wrapping_add(offset)),
        ValueRole::HeapLive => row.heap_live = Some(value),
        ValueRole::HeapGoal => row.heap_goal = Some(value),
        ValueRole::Generation => row.gc_generation = u32::try_from(value).ok(),
        ValueRole::GenerationConst(g) => row.gc_generation = Some(g),
        // u64::MAX: the runtime did not report it (see RUNTIME_DEREF_STASH).
        ValueRole::Collected => row.collected = (value != u64::MAX).then_some(value),
        ValueRole::Uncollectable => row.uncollectable = (value != u64::MAX).then_some(value),
        ValueRole::Reason(names) => {
            row.reason = usize::try_from(value)
                .ok()
                .and_then(|i| names.get(i))
                .copied()
        }
    }
}

/// One row of the events table.
fn to_row<'a>(
    event: &Event,
    table: &'a attach::ProbeTable,
    types: &'a TypeCache,
    stack_id: Option<u32>,
) -> Row<'a> {
    let header = event.header();
    let meta = table.meta(header.probe);
    let func = meta.map_or("unknown", |m| m.func.as_str());
    let runtime = meta.map_or(analysis::schema::runtime::NATIVE, |m| m.runtime);
    let base = Row {
        ts_ns: header.ts_ns,
        pid: header.pid,
        tid: header.tid,
        func,
        runtime,
        domain: meta.and_then(|m| m.domain),
        stack_id,
        ..Row::default()
    };
    match *event {
        Event::Alloc { kind, event, .. } => {
            let is_go = runtime == analysis::schema::runtime::GO;
            Row {
                event: kind.name(),
                addr: event.addr,
                size: event.size,
                old_addr: (kind == EventKind::Realloc).then_some(event.arg),
                align: (!is_go && kind == EventKind::Alloc && event.arg != 0).then_some(event.arg),
                go_type: if is_go {
                    types.get(header.probe, event.arg)
                } else {
                    None
                },
                ..base
            }
        }
        Event::Runtime {
            kind: EventKind::RegionAlloc,
            event,
            ..
        } => Row {
            event: analysis::schema::event::ALLOC,
            addr: event.arg,
            size: event.values[0],
            ..base
        },
        Event::Runtime {
            kind: EventKind::RegionFree,
            event,
            ..
        } => Row {
            event: analysis::schema::event::FREE,
            addr: event.arg,
            size: event.values[0],
            ..base
        },
        Event::Runtime { kind, event, .. } => {
            let mut row = Row {
                event: kind.name(),
                ..base
            };
            if let Some(meta) = meta {
                for (role, value) in meta.roles.iter().zip(event.values) {
                    fill_role(&mut row, *role, value);
                }
                fill_role(&mut row, meta.arg_role, event.arg);
            }
            row
        }
        Event::Map { kind, event, .. } => {
            let failed = event.ret < 0 && kind != EventKind::Brk;
            let errno = failed.then(|| event.ret.unsigned_abs() as u32);
            let result_addr = if failed { 0 } else { event.addr };
            let row = Row {
                event: kind.name(),
                addr: event.addr,
                size: event.len,
                errno,
                ..base
            };
            match kind {
                EventKind::Mmap => Row {
                    addr: result_addr,
                    prot: Some(event.prot),
                    map_flags: Some(event.flags),
                    fd: Some(event.fd),
                    ..row
                },
                EventKind::Mremap => Row {
                    addr: result_addr,
                    old_addr: Some(event.old_addr),
                    old_size: Some(event.old_len),
                    map_flags: Some(event.flags),
                    ..row
                },
                EventKind::Brk => Row {
                    old_addr: Some(event.old_addr),
                    ..row
                },
                EventKind::Mprotect => Row {
                    prot: Some(event.prot),
                    ..row
                },
                EventKind::Madvise => Row {
                    map_flags: Some(event.flags),
                    ..row
                },
                _ => row,
            }
        }
    }
}

/// A new executable file mapping: time to look for allocators in it (dlopen).
fn maps_new_code(event: &Event) -> bool {
    const PROT_EXEC: u32 = 4;
    matches!(event, Event::Map { kind: EventKind::Mmap, event, .. } if event.ret >= 0 && event.fd >= 0 && event.prot & PROT_EXEC != 0)
}

struct Recording<'a> {
    options: &'a RecordOptions,
    programs: Option<Programs>,
    ring: RingBuf<MapData>,
    counters: aya::maps::PerCpuArray<MapData, u64>,
    /// Rows written per probe id.
    probe_events: Vec<u64>,
    attacher: Attacher,
    writer: TraceWriter,
    run: RunInfo,
    stats: Stats,
    types: TypeCache,
    stacks: stacks::StackTable,
    python_names: stacks::PythonNames,
    /// Holds at `Py_FinalizeEx` released so far (`Counter::PyHeldAtFinalize`).
    released: u64,
    /// Last GC generation started per thread.
    gc_generation: rustc_hash::FxHashMap<u32, u32>,
    stack_map: Option<aya::maps::HashMap<MapData, u64, tracer_common::stack::StackValue>>,
    live: LiveLine,
    rescan: bool,
}

/// Whatever ends the recording (an error included), a process held at `Py_FinalizeEx` is
/// resumed: it must never be left stopped.
impl Drop for Recording<'_> {
    fn drop(&mut self) {
        let held = self.holds();
        if held > self.released {
            self.resume(held);
        }
    }
}

impl Recording<'_> {
    /// Moves everything waiting in the ring into the writer.
    fn drain(&mut self) -> Result<(), RecordError> {
        let t = std::time::Instant::now();
        let (events0, new0) = (self.stats.events, self.stacks.len());
        self.python_names.next_epoch();
        let result = self.drain_ring();
        if t.elapsed() > std::time::Duration::from_millis(200) {
            log::debug!(
                "drain took {:?}: {} events, {} new stacks",
                t.elapsed(),
                self.stats.events - events0,
                self.stacks.len() - new0
            );
        }
        result
    }

    fn drain_ring(&mut self) -> Result<(), RecordError> {
        while let Some(item) = self.ring.next() {
            let Some(event) = decode::decode(&item) else {
                continue;
            };
            drop(item);
            self.stats.observe(&event);
            if let Some(n) = self.probe_events.get_mut(event.header().probe as usize) {
                *n += 1;
            }
            self.rescan |= maps_new_code(&event);
            self.types.learn(&event, &self.attacher.table);
            let pid = event.header().pid;
            let stack_id = event.stack().and_then(|key| {
                let (id, new) = self.stacks.intern(key)?;
                if new && let Some(map) = &self.stack_map {
                    self.stacks.load(
                        id,
                        key,
                        map,
                        &mut self.python_names,
                        pid,
                        self.attacher.python_frames.as_ref(),
                    );
                }
                Some(id)
            });
            let mut row = to_row(&event, &self.attacher.table, &self.types, stack_id);
            // A collection's end row carries the generation its start row announced (CPython's
            // end probes cannot read it; a thread runs one collection at a time).
            if row.runtime == analysis::schema::runtime::PYTHON {
                if row.event == analysis::schema::event::GC_START
                    && let Some(g) = row.gc_generation
                {
                    self.gc_generation.insert(row.tid, g);
                } else if row.event == analysis::schema::event::GC_END
                    && row.gc_generation.is_none()
                {
                    row.gc_generation = self.gc_generation.get(&row.tid).copied();
                }
            }
            self.writer.push(&row)?;
        }
        if std::mem::take(&mut self.rescan)
            && let Some(programs) = self.programs.as_mut()
        {
            match self.attacher.scan(programs) {
                Ok(_) => {}
                Err(AttachError::ProcessGone { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// Rewrites `stacks.parquet` (new stacks read from the kernel map) and `modules.parquet`.
    fn write_side_tables(&mut self) -> Result<(), RecordError> {
        let dir = &self.options.output;
        if !self.stacks.is_empty() {
            let t = std::time::Instant::now();
            self.stacks.write(&dir.join(schema::STACKS_FILE))?;
            log::debug!("stacks.parquet written in {:?}", t.elapsed());
        }
        let pid = self.attacher.pid;
        let modules: Vec<analysis::write::ModuleRow> = self
            .attacher
            .modules
            .iter()
            .map(|m| analysis::write::ModuleRow {
                pid,
                path: m.path.clone(),
                build_id: (!m.build_id.is_empty()).then(|| m.build_id.clone()),
                start: m.start,
                end: m.end,
                file_offset: m.file_offset,
                perms: m.perms.clone(),
                ts_ns: 0,
            })
            .collect();
        analysis::write::write_table(
            &dir.join(schema::MODULES_FILE),
            &analysis::write::modules_batch(&modules)?,
        )?;
        Ok(())
    }

    fn counter(&self, counter: Counter) -> Vec<u64> {
        self.counters
            .get(&(counter as u32), 0)
            .map(|v| v.to_vec())
            .unwrap_or_default()
    }

    /// Resumes a process the eBPF side stopped at `Py_FinalizeEx`, once the ring holds nothing
    /// from before the stop: every stack is then named (see `stacks`).
    fn release_held(&mut self) -> Result<(), RecordError> {
        let held = self.holds();
        if held > self.released {
            self.drain()?;
            self.resume(held);
        }
        Ok(())
    }

    /// Times the process was held at `Py_FinalizeEx`; the hold probe exists only with Python
    /// frames, so the counter is not read (a map lookup per loop turn) otherwise.
    fn holds(&self) -> u64 {
        if self.attacher.python_frames.is_none() {
            return 0;
        }
        self.counter(Counter::PyHeldAtFinalize).iter().sum()
    }

    /// Sends SIGCONT to the held process; `held` holds are then released.
    fn resume(&mut self, held: u64) {
        self.released = held;
        let _ = kill(Pid::from_raw(self.attacher.pid as i32), Signal::SIGCONT);
    }

    fn lost_so_far(&self) -> u64 {
        self.counter(Counter::RingFull).iter().sum()
    }

    /// Fills in counters, probes, segments; `final_status` when done.
    fn update_run_info(&mut self, final_status: Option<Status>) {
        let run = &mut self.run;
        run.counters.clear();
        let mut lost_total = 0;
        for counter in Counter::ALL {
            let per_cpu: Vec<u64> = self
                .counters
                .get(&(counter as u32), 0)
                .map(|v| v.to_vec())
                .unwrap_or_default();
            let total: u64 = per_cpu.iter().sum();
            if counter == Counter::RingFull {
                run.lost_per_cpu = per_cpu;
            }
            if counter.is_loss() {
                lost_total += total;
            }
            run.counters.insert(counter.name().to_owned(), total);
        }
        run.lost_total = lost_total;
        run.probes = self.attacher.table.probes.clone();
        for probe in &mut run.probes {
            probe.events = self
                .probe_events
                .get(probe.id as usize)
                .copied()
                .unwrap_or(0);
        }
        run.modules = self.attacher.modules.clone();
        run.warnings = self.attacher.warnings.clone();
        run.runtimes = self.attacher.runtimes.clone();
        if let Some(serde_json::Value::Object(frames)) = run
            .runtimes
            .get_mut("python")
            .and_then(|p| p.get_mut("python_frames"))
            && self.attacher.python_frames.is_some()
        {
            frames.insert(
                "code_objects_read".to_owned(),
                self.python_names.code_objects_read.into(),
            );
            // Frames whose code object was freed before the reader got to it (module bodies
            // run at import, while the reader lags behind): named `<unknown>`.
            frames.insert(
                "frames_unnamed".to_owned(),
                self.python_names.frames_unnamed.into(),
            );
        }
        run.segments = self.writer.segments().to_vec();
        run.events_written = self.writer.rows_written();
        if let Some(status) = final_status {
            run.status = status;
            run.clock.monotonic_end_ns = now(ClockId::CLOCK_MONOTONIC);
        }
    }

    fn write_run_info(&mut self, final_status: Option<Status>) -> Result<(), RecordError> {
        self.update_run_info(final_status);
        self.run.write(&self.options.output).map_err(io_err(format!(
            "writing {}",
            self.options.output.join(schema::RUN_JSON).display()
        )))
    }
}

fn take_map<T>(programs: &mut Programs, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map>,
{
    programs
        .take_map(name)
        .and_then(|m| T::try_from(m).ok())
        .ok_or(LoadError::Missing { what: "map", name })
}

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
        && has_exited(pid)
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
    prepare_output(options)?;
    let phase = std::time::Instant::now();
    let mut programs = Programs::load(LoadOptions {
        ring_bytes: options.ring_bytes,
    })?;
    log::debug!("eBPF programs loaded in {:?}", phase.elapsed());
    let ring = programs.take_ring()?;
    let counters = take_map(&mut programs, tracer_common::maps::COUNTERS)?;
    let stack_map = take_map(&mut programs, tracer_common::maps::STACKS).ok();
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
    let mut attacher = Attacher::new(pid, options.syscalls, options.stacks);
    attacher.python_api = options.python_api;
    attacher.python_frames_wanted = options.python_frames;
    programs.add_target(pid)?;
    if options.syscalls {
        programs.attach_syscalls()?;
    }
    log::debug!(
        "syscall tracepoints attached {:?} after start",
        phase.elapsed()
    );
    let mut run = base_run_info(options, pid);
    let loader_exit = match &stopped {
        Some(stopped) => {
            match spawn::run_loader(stopped, || attacher.scan(&mut programs).map(drop)) {
                Ok(Ok(LoaderOutcome::Released)) => None,
                Ok(Ok(LoaderOutcome::Exited(status))) => Some(status),
                Ok(Err(err)) => {
                    kill_child(pid);
                    return Err(err.into());
                }
                Err(err) => {
                    kill_child(pid);
                    return Err(err.into());
                }
            }
        }
        None => {
            attacher.scan(&mut programs).map_err(|err| match err {
                AttachError::ProcessGone { pid } => RecordError::ProcessExited { pid },
                other => other.into(),
            })?;
            None
        }
    };
    if loader_exit.is_none() && attacher.table.uprobe_count() == 0 {
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
        footer_metadata(&run),
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
        types: TypeCache::default(),
        stacks: stacks::StackTable::default(),
        python_names: stacks::PythonNames::default(),
        gc_generation: rustc_hash::FxHashMap::default(),
        stack_map,
        live: LiveLine::new(options.live),
        rescan: false,
        released: 0,
    };
    rec.write_run_info(None)?;

    // The event loop: drain on a timer or when the eBPF side asks (a batch is waiting), stop
    // when the target exits or a signal arrives.
    let mut target_exited = loader_exit.is_some();
    let mut stopped_by = None;
    while !target_exited {
        let (pid_ready, signal_ready) = {
            let ring_fd = rec.ring.as_fd();
            let signal_fd = signals.fd();
            let mut fds = [
                PollFd::new(ring_fd, PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[1]), ready(&fds[2]))
        };
        rec.drain()?;
        rec.release_held()?;
        if signal_ready || signals.received().is_some() {
            stopped_by = signals.received();
            break;
        }
        target_exited = pid_ready;
        if rec.writer.segment_due() {
            rec.writer.roll()?;
            rec.write_side_tables()?;
            rec.write_run_info(None)?;
        }
        let lost = rec.lost_so_far();
        rec.live.tick(&rec.stats, lost, pid);
    }

    // The target has exited or the recording was stopped: what is in the ring now is
    // everything up to the stop. The probes stay attached until the caller drops `programs`.
    let programs = rec.programs.take();
    rec.drain()?;
    rec.release_held()?;
    rec.live.clear();
    let status = if stopped_by.is_some() {
        Status::Interrupted
    } else {
        Status::Complete
    };
    rec.writer.roll()?;
    rec.write_side_tables()?;
    let segments = rec.writer.segments().to_vec();
    let bytes_on_disk: u64 = segments
        .iter()
        .filter_map(|s| fs::metadata(options.output.join(s)).ok())
        .map(|m| m.len())
        .sum();
    rec.update_run_info(Some(status));
    rec.run.tracer = own_usage();
    rec.run.segments = segments;
    signals.exit_on_next();

    // How did the target end?
    let exit = match (loader_exit, &stopped) {
        (Some(status), _) => wait_status_exit(status),
        (None, Some(_)) => {
            if let Some(sig) = stopped_by {
                // Like sudo and timeout: pass the stop signal on to the command we started.
                let _ = kill(Pid::from_raw(pid as i32), Signal::try_from(sig).ok());
            }
            match waitpid(Pid::from_raw(pid as i32), None) {
                Ok(status) => wait_status_exit(status),
                Err(_) => TargetExit::Running,
            }
        }
        (None, None) => {
            if target_exited {
                TargetExit::Code(0)
            } else {
                TargetExit::Running
            }
        }
    };
    rec.run.exit = match exit {
        TargetExit::Code(code) if stopped.is_some() => Some(Exit {
            code: Some(code),
            signal: None,
        }),
        TargetExit::Signal(sig) => Some(Exit {
            code: None,
            signal: Some(sig),
        }),
        _ => None,
    };
    rec.run
        .write(&options.output)
        .map_err(io_err("writing run.json"))?;
    if let Some((uid, gid)) = options.owner {
        chown_tree(&options.output, uid, gid);
    }
    let exit = if stopped.is_none() && target_exited {
        TargetExit::Running
    } else {
        exit
    };
    Ok(Outcome {
        programs,
        run: std::mem::take(&mut rec.run),
        stats: std::mem::take(&mut rec.stats),
        exit,
        bytes_on_disk,
        stopped_by,
    })
}

/// The tracer's own CPU time and peak RSS so far.
fn own_usage() -> Option<analysis::run::TracerUsage> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(analysis::run::TracerUsage {
        cpu_user_s: secs(usage.user_time()),
        cpu_system_s: secs(usage.system_time()),
        max_rss_bytes: u64::try_from(usage.max_rss()).unwrap_or(0) * 1024,
    })
}

fn wait_status_exit(status: WaitStatus) -> TargetExit {
    match status {
        WaitStatus::Exited(_, code) => TargetExit::Code(code),
        WaitStatus::Signaled(_, sig, _) => TargetExit::Signal(sig as i32),
        _ => TargetExit::Running,
    }
}

/// Gives the trace to the user who ran `sudo alloctrace`, so they can read and delete it.
fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    let ids = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    let _ = nix::unistd::chown(dir, ids.0, ids.1);
    for sub in [dir.join(schema::RUN_JSON), dir.join(schema::EVENTS_DIR)] {
        let _ = nix::unistd::chown(&sub, ids.0, ids.1);
    }
    if let Ok(entries) = fs::read_dir(dir.join(schema::EVENTS_DIR)) {
        for entry in entries.flatten() {
            let _ = nix::unistd::chown(&entry.path(), ids.0, ids.1);
        }
    }
}
