//! Loading the embedded eBPF object and attaching its programs.
//!
//! `tracer/build.rs` builds `tracer-ebpf` and this module embeds the result. Probe ids are
//! handed out by the caller and travel as BPF cookies, so one program serves every function
//! with the same argument layout.

use std::{io, num::NonZeroU32, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        ProgramError, TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use tracer_common::{counter::Counter, maps, probe::SYSCALL_PROBES};

use crate::probes::{self, Attach, ProbeSpec};

/// The object built by `build.rs`; empty when the build had no bpf-linker.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf.o"));

const UPROBE_PROGRAMS: &[&str] = &[
    probes::ALLOC_ENTRY_PROGRAM,
    probes::RETURN_PROGRAM,
    probes::RELEASE_PROGRAM,
    probes::GO_ENTRY_PROGRAM,
    probes::GO_RET_PROGRAM,
    probes::GO_SITE_PROGRAM,
    probes::RUNTIME_EVENT_PROGRAM,
    probes::RUNTIME_RETURN_PROGRAM,
    probes::RUNTIME_STATS_PROGRAM,
    probes::PYTHON_FINALIZE_PROGRAM,
];
const TRACEPOINT_PROGRAMS: &[&str] = &[
    "sys_enter",
    "sys_exit",
    "task_newtask",
    "process_exec",
    "process_exit",
    "exit_group",
    "signal_deliver",
    "hold_mmap_enter",
    "hold_mmap_exit",
];

/// The tracepoints that follow the process tree (tracer-ebpf's `tree.rs`): program, category,
/// event.
const TREE_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("task_newtask", "task", "task_newtask"),
    ("process_exec", "sched", "sched_process_exec"),
    ("process_exit", "sched", "sched_process_exit"),
    ("exit_group", "syscalls", "sys_enter_exit_group"),
    ("signal_deliver", "signal", "signal_deliver"),
    ("hold_mmap_enter", "syscalls", "sys_enter_mmap"),
    ("hold_mmap_exit", "syscalls", "sys_exit_mmap"),
];

/// The kernel's `pid_max`: the size of the `TARGETS` array (indexed by tgid).
fn pid_max() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(maps::PID_MAX_LIMIT)
        .clamp(maps::DEFAULT_PID_MAX, maps::PID_MAX_LIMIT)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this alloctrace was built without its eBPF programs (bpf-linker was missing): run `cargo xtask setup`, then rebuild"
    )]
    NotBuilt,
    #[error(
        "permission denied loading eBPF programs: run alloctrace as root (sudo), or grant it CAP_BPF and CAP_PERFMON"
    )]
    Permission,
    #[error("loading the eBPF object")]
    Object(#[source] aya::EbpfError),
    #[error("loading eBPF program `{name}`")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("the eBPF object has no {what} `{name}`")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error("cannot mount tracefs at /sys/kernel/tracing (needed for the syscall tracepoints)")]
    Tracefs(#[source] nix::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "cannot place a uprobe on {func} at {}+{offset:#x}: the kernel refused it (EINVAL). Another tool \
         (bcc memleak, for example) probably holds a uprobe on the same instruction with a different \
         ref_ctr_offset; stop it and try again",
        module.display()
    )]
    Conflict {
        func: String,
        module: PathBuf,
        offset: u64,
    },
    #[error("process {pid} exited while probes were being attached")]
    ProcessGone { pid: u32 },
    #[error("attaching {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("attaching {what}")]
    Other {
        what: String,
        #[source]
        source: ProgramError,
    },
}

/// Options fixed at load time.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Ring-buffer size in bytes; rounded up to a power of two.
    pub ring_bytes: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            ring_bytes: maps::DEFAULT_RING_BYTES,
        }
    }
}

/// The loaded programs and maps.
pub struct Programs {
    ebpf: Ebpf,
    ring_bytes: u32,
    uprobe_links: Vec<(&'static str, aya::programs::uprobe::UProbeLinkId)>,
    /// USDT probes attached through raw perf events (aya 0.14 cannot set `ref_ctr_offset`).
    usdt_links: Vec<std::os::fd::OwnedFd>,
    tracepoint_links: Vec<(&'static str, aya::programs::trace_point::TracePointLinkId)>,
}

fn io_error(err: &ProgramError) -> Option<&io::Error> {
    match err {
        ProgramError::SyscallError(e) => Some(&e.io_error),
        _ => None,
    }
}

fn is_permission(err: &ProgramError) -> bool {
    io_error(err).is_some_and(|e| matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)))
}

impl Programs {
    pub fn load(options: LoadOptions) -> Result<Programs, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NotBuilt);
        }
        let ring_bytes = options.ring_bytes.max(4096).next_power_of_two();
        // Each CPU wakes the reader after submitting another eighth of the ring; otherwise it
        // drains on its timer (see `emit.rs` in tracer-ebpf).
        let wakeup_bytes = u64::from(ring_bytes / 8);
        let mut ebpf =
            EbpfLoader::new()
                // THREADS is a task-storage map: aya 0.14 creates it but has no typed wrapper.
                .allow_unsupported_maps()
                .override_global(maps::WAKEUP_BYTES, &wakeup_bytes, true)
                .map_max_entries(maps::EVENTS, ring_bytes)
                .map_max_entries(maps::TARGETS, pid_max())
                .load(OBJECT)
                .map_err(|e| match &e {
                    aya::EbpfError::MapError(aya::maps::MapError::CreateError {
                        io_error, ..
                    }) if io_error.raw_os_error() == Some(libc::EPERM) => LoadError::Permission,
                    _ => LoadError::Object(e),
                })?;
        for &name in UPROBE_PROGRAMS {
            let prog: &mut UProbe = program(&mut ebpf, name)?;
            prog.load().map_err(|source| load_error(name, source))?;
        }
        for &name in TRACEPOINT_PROGRAMS {
            let prog: &mut TracePoint = program(&mut ebpf, name)?;
            prog.load().map_err(|source| load_error(name, source))?;
        }
        Ok(Programs {
            ebpf,
            ring_bytes,
            uprobe_links: Vec::new(),
            usdt_links: Vec::new(),
            tracepoint_links: Vec::new(),
        })
    }

    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
    }

    /// Takes the event ring out (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self.ebpf.take_map(maps::EVENTS).ok_or(LoadError::Missing {
            what: "map",
            name: maps::EVENTS,
        })?;
        RingBuf::try_from(map).map_err(|e| LoadError::Object(e.into()))
    }

    /// Takes a map out of the object, so it outlives the programs (counters are read after the
    /// probes are detached).
    pub fn take_map(&mut self, name: &str) -> Option<aya::maps::Map> {
        self.ebpf.take_map(name)
    }

    /// Sets the `process::flags` of process `pid` (0 stops tracing it).
    pub fn set_target(&mut self, pid: u32, flags: u32) -> Result<(), LoadError> {
        let map = self.ebpf.map_mut(maps::TARGETS).ok_or(LoadError::Missing {
            what: "map",
            name: maps::TARGETS,
        })?;
        let mut targets: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(map).map_err(|e| LoadError::Object(e.into()))?;
        targets
            .set(pid, flags, 0)
            .map_err(|e| LoadError::Object(e.into()))
    }

    /// The `process::flags` of process `pid`.
    pub fn target(&self, pid: u32) -> u32 {
        self.ebpf
            .map(maps::TARGETS)
            .and_then(|map| aya::maps::Array::<_, u32>::try_from(map).ok())
            .and_then(|targets| targets.get(&pid, 0).ok())
            .unwrap_or(0)
    }

    /// Attaches the tracepoints that follow the process tree (forks, execs, exits and the
    /// holds of processes whose new code must be probed first).
    pub fn attach_tree(&mut self) -> Result<(), LoadError> {
        ensure_tracefs()?;
        for &(name, category, event) in TREE_TRACEPOINTS {
            let prog: &mut TracePoint = program(&mut self.ebpf, name)?;
            let link = prog
                .attach(category, event)
                .map_err(|source| load_error(name, source))?;
            self.tracepoint_links.push((name, link));
        }
        Ok(())
    }

    /// Attaches the address-space syscall tracepoints (system-wide, filtered by target pid in
    /// the program).
    pub fn attach_syscalls(&mut self) -> Result<(), LoadError> {
        ensure_tracefs()?;
        for (stage, name) in [("enter", "sys_enter"), ("exit", "sys_exit")] {
            let prog: &mut TracePoint = program(&mut self.ebpf, name)?;
            for (_, syscall) in SYSCALL_PROBES {
                let link = prog
                    .attach("syscalls", &format!("sys_{stage}_{syscall}"))
                    .map_err(|source| load_error(name, source))?;
                self.tracepoint_links.push((name, link));
            }
        }
        Ok(())
    }

    /// Gives the eBPF side the CPython frame-walk configuration of process `pid`.
    pub fn set_python_stacks(
        &mut self,
        pid: u32,
        config: &tracer_common::python::PyStackConfig,
    ) -> Result<(), AttachError> {
        let other = |e: aya::maps::MapError| AttachError::Other {
            what: format!("configuring the Python frame walk of process {pid}"),
            source: ProgramError::MapError(e),
        };
        let map = self
            .ebpf
            .map_mut(maps::PYTHON_STACKS)
            .ok_or_else(|| other(aya::maps::MapError::KeyNotFound))?;
        let mut configs: HashMap<_, u32, tracer_common::python::PyStackConfig> =
            HashMap::try_from(map).map_err(other)?;
        configs.insert(pid, config, 0).map_err(other)
    }

    /// Stores what stats probe `id` reads.
    fn set_stat_reads(
        &mut self,
        id: u32,
        reads: &[probes::StatRead],
        spec: &ProbeSpec,
    ) -> Result<(), AttachError> {
        use tracer_common::gc::{MAX_STAT_READS, StatReads};
        let other = |e: aya::maps::MapError| AttachError::Other {
            what: format!("configuring the reads of {}", spec.func),
            source: ProgramError::MapError(e),
        };
        let mut value = StatReads::default();
        for (i, read) in reads.iter().take(MAX_STAT_READS).enumerate() {
            value.addrs[i] = read.address;
            value.sizes[i] = read.size;
        }
        value.count = reads.len().min(MAX_STAT_READS) as u32;
        let map = self
            .ebpf
            .map_mut(maps::STAT_READS)
            .ok_or_else(|| other(aya::maps::MapError::KeyNotFound))?;
        let mut table: HashMap<_, u32, StatReads> = HashMap::try_from(map).map_err(other)?;
        table.insert(id, value, 0).map_err(other)
    }

    /// Stores the configuration of probe `id` for the generic programs (also to change it
    /// while the probe is attached: the programs read it on every hit).
    pub(crate) fn set_config(
        &mut self,
        id: u32,
        config: &tracer_common::probe::ProbeConfig,
    ) -> Result<(), AttachError> {
        let other = |e: aya::maps::MapError| AttachError::Other {
            what: format!("configuring probe {id}"),
            source: ProgramError::MapError(e),
        };
        let map = self
            .ebpf
            .map_mut(maps::PROBES)
            .ok_or_else(|| other(aya::maps::MapError::KeyNotFound))?;
        let mut array: aya::maps::Array<_, tracer_common::probe::ProbeConfig> =
            aya::maps::Array::try_from(map).map_err(other)?;
        array.set(id, config, 0).map_err(other)
    }

    /// Attaches `spec` for process `pid`, tagged with probe id `id`: its configuration first,
    /// then the return-side probes (a call already in flight then shows up as a return without
    /// entry, counted, instead of leaving a half-open call behind), then the entry probe.
    pub fn attach(&mut self, spec: &ProbeSpec, id: u32, pid: u32) -> Result<(), AttachError> {
        self.set_config(id, &spec.config)?;
        match &spec.attach {
            Attach::At { program, offsets } => {
                for &offset in offsets {
                    self.attach_uprobe(program, spec, offset, id, pid)?;
                }
                Ok(())
            }
            Attach::Return { program } => {
                self.attach_uprobe(program, spec, spec.file_offset, id, pid)
            }
            Attach::Entry { program } => {
                self.attach_uprobe(program, spec, spec.file_offset, id, pid)
            }
            Attach::EntryReturn { entry, ret } => {
                self.attach_uprobe(ret, spec, spec.file_offset, id, pid)?;
                self.attach_uprobe(entry, spec, spec.file_offset, id, pid)
            }
            Attach::EntryResults {
                entry,
                result,
                results,
            } => {
                for r in results {
                    self.attach_uprobe_cookie(result, spec, r.file_offset, r.cookie(id), pid)?;
                }
                self.attach_uprobe(entry, spec, spec.file_offset, id, pid)
            }
            Attach::Stats {
                program,
                offsets,
                reads,
            } => {
                self.set_stat_reads(id, reads, spec)?;
                for &offset in offsets {
                    self.attach_uprobe(program, spec, offset, id, pid)?;
                }
                Ok(())
            }
            Attach::Results { program, results } => {
                for r in results {
                    self.attach_uprobe_cookie(program, spec, r.file_offset, r.cookie(id), pid)?;
                }
                Ok(())
            }
            Attach::Usdt {
                program,
                ref_ctr_offset,
            } => {
                let prog: &mut UProbe = program_named(&mut self.ebpf, program)?;
                let prog_fd = prog.fd().map_err(|source| AttachError::Other {
                    what: format!("{program} fd"),
                    source,
                })?;
                let link = crate::sys::attach_usdt(
                    prog_fd,
                    &spec.module,
                    spec.file_offset,
                    *ref_ctr_offset,
                    pid,
                    u64::from(id),
                )
                .map_err(|source| usdt_error(spec, pid, source))?;
                self.usdt_links.push(link);
                Ok(())
            }
        }
    }

    /// Attaches the hold at `Py_FinalizeEx` (file `offset` in `module`) for process `pid`:
    /// see tracer-ebpf's `python_finalize`.
    pub fn attach_python_hold(
        &mut self,
        module: &std::path::Path,
        offset: u64,
        pid: u32,
    ) -> Result<(), AttachError> {
        let name = probes::PYTHON_FINALIZE_PROGRAM;
        let scope = NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        let prog: &mut UProbe = program_named(&mut self.ebpf, name)?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: None,
        };
        let link = prog
            .attach(point, module, scope)
            .map_err(|source| AttachError::Other {
                what: format!("Py_FinalizeEx in {}", module.display()),
                source,
            })?;
        self.uprobe_links.push((name, link));
        Ok(())
    }

    fn attach_uprobe(
        &mut self,
        name: &str,
        spec: &ProbeSpec,
        offset: u64,
        id: u32,
        pid: u32,
    ) -> Result<(), AttachError> {
        self.attach_uprobe_cookie(name, spec, offset, u64::from(id), pid)
    }

    /// Attaches `name` at `offset` with `cookie` (the probe id in its low 32 bits).
    fn attach_uprobe_cookie(
        &mut self,
        name: &str,
        spec: &ProbeSpec,
        offset: u64,
        cookie: u64,
        pid: u32,
    ) -> Result<(), AttachError> {
        let scope = NonZeroU32::new(pid).map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        let prog: &mut UProbe = program_named(&mut self.ebpf, name)?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(cookie),
        };
        let link = prog.attach(point, &spec.module, scope).map_err(|source| {
            let errno = io_error(&source).and_then(io::Error::raw_os_error);
            match errno {
                Some(libc::EINVAL) => AttachError::Conflict {
                    func: spec.func.clone(),
                    module: spec.module.clone(),
                    offset,
                },
                Some(libc::ESRCH) => AttachError::ProcessGone { pid },
                _ => AttachError::Other {
                    what: format!("{} in {}", spec.func, spec.module.display()),
                    source,
                },
            }
        })?;
        let name = UPROBE_PROGRAMS
            .iter()
            .copied()
            .find(|n| *n == name)
            .unwrap_or(probes::ALLOC_ENTRY_PROGRAM);
        self.uprobe_links.push((name, link));
        Ok(())
    }

    /// Detaches every probe and unloads the programs.
    ///
    /// Each uprobe detach waits for an RCU grace period (~90 ms here), and a program with dozens
    /// of probes would take seconds to exit. Concurrent waiters share grace periods, so the
    /// links are dropped from parallel threads.
    pub fn detach_all(mut self) {
        let mut uprobes = Vec::new();
        for (name, id) in self.uprobe_links.drain(..) {
            if let Ok(prog) = program::<UProbe>(&mut self.ebpf, name)
                && let Ok(link) = prog.take_link(id)
            {
                uprobes.push(link);
            }
        }
        let mut tracepoints = Vec::new();
        for (name, id) in self.tracepoint_links.drain(..) {
            if let Ok(prog) = program::<TracePoint>(&mut self.ebpf, name)
                && let Ok(link) = prog.take_link(id)
            {
                tracepoints.push(link);
            }
        }
        let t = std::time::Instant::now();
        let n = uprobes.len() + tracepoints.len();
        let usdt = std::mem::take(&mut self.usdt_links);
        std::thread::scope(|scope| {
            for link in usdt {
                scope.spawn(move || drop(link));
            }
            for link in uprobes {
                scope.spawn(move || drop(link));
            }
            for link in tracepoints {
                scope.spawn(move || drop(link));
            }
        });
        log::debug!("{n} links dropped in {:?}", t.elapsed());
        let t = std::time::Instant::now();
        drop(self.ebpf);
        log::debug!("programs unloaded in {:?}", t.elapsed());
    }

    fn per_cpu(&self, name: &'static str, index: u32) -> Vec<u64> {
        let Some(map) = self.ebpf.map(name) else {
            return Vec::new();
        };
        let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else {
            return Vec::new();
        };
        array
            .get(&index, 0)
            .map(|values| values.to_vec())
            .unwrap_or_default()
    }

    /// A counter's value per CPU.
    pub fn counter(&self, counter: Counter) -> Vec<u64> {
        self.per_cpu(maps::COUNTERS, counter as u32)
    }
}

fn load_error(name: &'static str, source: ProgramError) -> LoadError {
    if is_permission(&source) {
        LoadError::Permission
    } else {
        LoadError::Program { name, source }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(LoadError::Missing {
            what: "program",
            name,
        })
}

/// Tracepoint ids are read from tracefs, which is not mounted by default on this kind of
/// machine.
fn ensure_tracefs() -> Result<(), LoadError> {
    let events = std::path::Path::new("/sys/kernel/tracing/events");
    if events.exists() || std::path::Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(LoadError::Tracefs)
}

/// Whether an attach error is fatal for the whole recording (as opposed to one probe).
pub fn is_fatal(err: &AttachError) -> bool {
    matches!(
        err,
        AttachError::Conflict { .. } | AttachError::ProcessGone { .. }
    )
}

fn program_named<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, AttachError> {
    ebpf.program_mut(name)
        .and_then(|p| <&mut UProbe>::try_from(p).ok())
        .ok_or_else(|| AttachError::Other {
            what: format!("program {name}"),
            source: ProgramError::NotLoaded,
        })
}

fn usdt_error(spec: &ProbeSpec, pid: u32, source: io::Error) -> AttachError {
    match source.raw_os_error() {
        Some(libc::EINVAL) => AttachError::Conflict {
            func: spec.func.clone(),
            module: spec.module.clone(),
            offset: spec.file_offset,
        },
        Some(libc::ESRCH) => AttachError::ProcessGone { pid },
        _ => AttachError::Io {
            what: format!("USDT probe {} in {}", spec.func, spec.module.display()),
            source,
        },
    }
}
