//! Finding the target's allocators in its mapped files and attaching probes to them, with the
//! table of every probe attached (their ids name the rows' `func`).

use std::{collections::HashSet, sync::Arc};

use trace_format::{
    names::{Domain, Runtime},
    run::{Module, Probe},
};
use tracer_common::probe::{
    FIRST_UPROBE_ID, MAX_PROBES, ProbeConfig, STACK_CALLER_FIXUP, STACK_CAPTURE, STACK_OWN_WALK,
    STACK_PYTHON, SYSCALL_PROBES,
};

use crate::{
    ebpf::{self, AttachError, Programs},
    elf::ElfImage,
    golang::GoBinary,
    probes::{self, ProbeSpec, TypeNames, ValueRole},
    procmaps::{self, Mapping},
    python::{PythonRuntime, frames::FrameLayout},
};

/// What user space knows about a probe id: how to name and fill its rows.
#[derive(Clone)]
pub struct ProbeMeta {
    pub func: String,
    pub runtime: Runtime,
    pub domain: Option<Domain>,
    pub roles: [ValueRole; 3],
    pub arg_role: ValueRole,
    /// For stats probes: what each value is, with its size in bytes.
    pub stat_roles: Vec<(probes::StatRole, u8)>,
    /// Resolves the type pointer of Go allocation rows.
    pub types: Option<Arc<dyn TypeNames>>,
}

/// Every probe attached, by id.
pub struct ProbeTable {
    metas: Vec<Option<ProbeMeta>>,
    pub probes: Vec<Probe>,
    next_id: u32,
}

impl ProbeTable {
    pub fn new(syscalls: bool) -> ProbeTable {
        let mut table = ProbeTable {
            metas: vec![None; MAX_PROBES as usize],
            probes: Vec::new(),
            next_id: FIRST_UPROBE_ID,
        };
        if syscalls {
            for (id, name) in SYSCALL_PROBES {
                table.metas[id as usize] = Some(ProbeMeta {
                    func: name.to_owned(),
                    runtime: Runtime::Native,
                    domain: None,
                    roles: [ValueRole::Unused; 3],
                    arg_role: ValueRole::Unused,
                    stat_roles: Vec::new(),
                    types: None,
                });
                table.probes.push(Probe {
                    id,
                    func: name.to_owned(),
                    runtime: Runtime::Native.as_str().to_owned(),
                    kind: "tracepoint".to_owned(),
                    symbol: format!("syscalls:sys_enter_{name}+sys_exit_{name}"),
                    ..Probe::default()
                });
            }
        }
        table
    }

    pub fn meta(&self, id: u32) -> Option<&ProbeMeta> {
        self.metas.get(id as usize)?.as_ref()
    }

    pub fn uprobe_count(&self) -> usize {
        self.probes
            .iter()
            .filter(|p| p.id >= FIRST_UPROBE_ID)
            .count()
    }

    /// Registers `spec` and returns its id, or None when the table is full.
    pub fn register_with_types(
        &mut self,
        spec: &ProbeSpec,
        types: Option<Arc<dyn TypeNames>>,
    ) -> Option<u32> {
        let id = self.register(spec)?;
        if let Some(Some(meta)) = self.metas.get_mut(id as usize) {
            meta.types = types;
        }
        Some(id)
    }

    fn register(&mut self, spec: &ProbeSpec) -> Option<u32> {
        let id = self.next_id;
        if id >= MAX_PROBES {
            return None;
        }
        self.next_id += 1;
        self.metas[id as usize] = Some(ProbeMeta {
            func: spec.func.clone(),
            runtime: spec.runtime,
            domain: spec.domain,
            roles: spec.roles,
            arg_role: spec.arg_role,
            stat_roles: match &spec.attach {
                probes::Attach::Stats { reads, .. } => {
                    reads.iter().map(|r| (r.role, r.size)).collect()
                }
                _ => Vec::new(),
            },
            types: None,
        });
        self.probes.push(Probe {
            id,
            func: spec.func.clone(),
            runtime: spec.runtime.as_str().to_owned(),
            kind: spec.attach.describe(),
            symbol: spec.symbol.clone(),
            aliases: spec.aliases.clone(),
            module: spec.module.display().to_string(),
            address: spec.address,
            probe_offset: spec.placement.offset,
            file_offset: spec.file_offset,
            placement: spec.placement.describe(),
            events: 0,
        });
        Some(id)
    }
}

/// The probes of the traced processes.
///
/// Following the tree, each file is probed once for every process (`scope` 0): a process that
/// maps a file already probed (a forked child, an exec'd program using the same libc) has
/// its probes as soon as the mapping exists, and the eBPF programs keep only traced processes'
/// calls. With `--no-follow` the probes are the top process's own (`scope` = its pid).
pub struct Attacher {
    /// The top process (the command started, or the process attached to).
    pub pid: u32,
    /// The uprobes' process filter: 0 for every process, else that pid only.
    scope: u32,
    pub table: ProbeTable,
    /// Each file probed, as first mapped (run.json's `modules`).
    pub modules: Vec<Module>,
    /// Each process's executable file mappings (modules.parquet).
    pub process_modules: Vec<(u32, Module)>,
    pub warnings: Vec<String>,
    /// Files probed, by (device, inode).
    scanned: HashSet<(String, u64)>,
    /// Mappings recorded per process, by (pid, device, inode, start).
    mapped: HashSet<(u32, String, u64, u64)>,
    /// The language runtime each probed file holds (`go`, `python`).
    file_runtimes: std::collections::HashMap<(String, u64), &'static str>,
    /// The CPython interpreter files, with their link-time frame layout (per process, the
    /// frame walk needs the load bias).
    python_files: HashSet<(String, u64)>,
    /// Processes whose Python frame walk is configured.
    python_pids: HashSet<u32>,
    /// Capture call stacks at allocation probes.
    stacks: bool,
    /// Also probe CPython's public allocator API (tells `obj` from `mem`; costlier).
    pub python_api: bool,
    /// Facts about language runtimes found (run.json `runtimes`).
    pub runtimes: std::collections::BTreeMap<String, serde_json::Value>,
    /// The probes that capture stacks, with their configuration, so the Python frame walk can
    /// be switched on for them when the process turns out to run CPython.
    stack_probes: Vec<(u32, ProbeConfig)>,
    /// The process's CPython frame layout, once its frames are walked (`STACK_PYTHON`).
    pub python_frames: Option<FrameLayout>,
    /// Whether to walk CPython's frames at all (with stacks).
    pub python_frames_wanted: bool,
    /// Attach allocator probes (the `alloc` category).
    pub alloc: bool,
    /// Attach GC-cycle, stop-the-world and collection probes (the `gc` category).
    pub gc: bool,
}

impl Attacher {
    /// `follow`: probe files for every process (the eBPF side filters by traced process).
    pub fn new(pid: u32, syscalls: bool, stacks: bool, follow: bool) -> Attacher {
        Attacher {
            pid,
            scope: if follow { 0 } else { pid },
            table: ProbeTable::new(syscalls),
            modules: Vec::new(),
            process_modules: Vec::new(),
            warnings: Vec::new(),
            scanned: HashSet::new(),
            mapped: HashSet::new(),
            file_runtimes: std::collections::HashMap::new(),
            python_files: HashSet::new(),
            python_pids: HashSet::new(),
            stacks,
            python_api: false,
            runtimes: std::collections::BTreeMap::new(),
            stack_probes: Vec::new(),
            python_frames: None,
            python_frames_wanted: false,
            alloc: true,
            gc: true,
        }
    }

    /// Reads the top process's mappings and attaches probes in every executable file not seen
    /// yet.
    pub fn scan(&mut self, programs: &mut Programs) -> Result<usize, AttachError> {
        self.scan_process(programs, self.pid)
    }

    /// Reads process `pid`'s mappings and attaches probes in every executable file not seen
    /// yet. Per-probe failures become warnings; a conflict with another tool or the process
    /// vanishing are errors.
    pub fn scan_process(
        &mut self,
        programs: &mut Programs,
        pid: u32,
    ) -> Result<usize, AttachError> {
        let maps = procmaps::read(pid).map_err(|_| AttachError::ProcessGone { pid })?;
        let mut attached = 0;
        for mapping in maps.iter().filter(|m| m.is_file() && m.is_executable()) {
            let file = (mapping.dev.clone(), mapping.inode);
            if self.scanned.insert(file.clone()) {
                attached += self.attach_module(programs, mapping, pid)?;
            } else if self.python_files.contains(&file) && !self.python_pids.contains(&pid) {
                self.configure_python_process(programs, mapping, pid);
            }
            if self.mapped.insert((pid, file.0, file.1, mapping.start)) {
                let build_id = self
                    .modules
                    .iter()
                    .find(|m| m.path == mapping.path)
                    .map(|m| m.build_id.clone())
                    .unwrap_or_default();
                self.process_modules
                    .push((pid, module_of(mapping, build_id)));
            }
        }
        Ok(attached)
    }

    /// A fork: the child has its parent's mappings until it maps more or execs.
    pub fn inherit(&mut self, parent: u32, child: u32) {
        let inherited: Vec<(u32, Module)> = self
            .process_modules
            .iter()
            .filter(|(p, _)| *p == parent)
            .map(|(_, m)| (child, m.clone()))
            .collect();
        let keys: Vec<(u32, String, u64, u64)> = self
            .mapped
            .iter()
            .filter(|(p, ..)| *p == parent)
            .map(|(_, dev, inode, start)| (child, dev.clone(), *inode, *start))
            .collect();
        self.mapped.extend(keys);
        self.process_modules.extend(inherited);
    }

    /// The language runtimes found in the files process `pid` maps (`native` when none).
    pub fn runtimes_of(&self, pid: u32) -> Vec<&'static str> {
        let mut found: Vec<&'static str> = self
            .mapped
            .iter()
            .filter(|(p, ..)| *p == pid)
            .filter_map(|(_, dev, inode, _)| self.file_runtimes.get(&(dev.clone(), *inode)))
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            found.push("native");
        }
        found
    }

    /// A CPython interpreter already probed, mapped by another process: that process's frame
    /// walk needs its own load bias.
    fn configure_python_process(&mut self, programs: &mut Programs, mapping: &Mapping, pid: u32) {
        let Some(layout) = self.python_frames else {
            return;
        };
        let path = mapping.open_path(pid);
        let Ok(image) = ElfImage::open(&path) else {
            return;
        };
        let bias = image
            .address_of(mapping.offset)
            .map_or(0, |vaddr| mapping.start.wrapping_sub(vaddr & !0xfff));
        let config = python_stack_config(&layout, bias);
        match programs.set_python_stacks(pid, &config) {
            Ok(()) => {
                self.python_pids.insert(pid);
            }
            Err(err) => self.warn(format!(
                "Python frames of process {pid} unavailable: {err}: {}",
                error_chain(&err)
            )),
        }
    }

    fn attach_module(
        &mut self,
        programs: &mut Programs,
        mapping: &Mapping,
        pid: u32,
    ) -> Result<usize, AttachError> {
        let path = mapping.open_path(pid);
        let image = match ElfImage::open(&path) {
            Ok(image) => image,
            Err(err) => {
                self.warn(format!("skipping {}: {err}", mapping.path));
                return Ok(0);
            }
        };
        self.modules.push(module_of(
            mapping,
            image.build_id().unwrap_or_default().to_owned(),
        ));
        let file = (mapping.dev.clone(), mapping.inode);
        let mut attached = self.attach_specs(programs, probes::plan(&image), None)?;
        // Runtime data is found at link-time addresses plus the load bias (non-zero for PIE
        // executables and shared libraries such as libpython).
        let bias = image
            .address_of(mapping.offset)
            .map_or(0, |vaddr| mapping.start.wrapping_sub(vaddr & !0xfff));
        match GoBinary::open(&path) {
            Ok(Some(binary)) => {
                let plan = probes::golang::plan(std::sync::Arc::new(binary), &image, bias);
                for warning in plan.warnings {
                    self.warn(warning);
                }
                self.runtimes.insert("go".to_owned(), plan.facts);
                self.file_runtimes.insert(file.clone(), "go");
                attached += self.attach_specs(programs, plan.specs, Some(plan.types))?;
            }
            Ok(None) => {}
            Err(err) => self.warn(format!("{}: not probing Go: {err}", mapping.path)),
        }
        if is_python_interpreter(&image) {
            let finalize = image
                .function_symbols()
                .iter()
                .find(|s| s.name == "Py_FinalizeEx")
                .and_then(|s| image.file_offset(s.address));
            self.file_runtimes.insert(file.clone(), "python");
            self.python_files.insert(file);
            attached += self.attach_python(programs, &path, bias, finalize, pid)?;
        }
        Ok(attached)
    }

    fn attach_python(
        &mut self,
        programs: &mut Programs,
        path: &std::path::Path,
        bias: u64,
        finalize: Option<u64>,
        pid: u32,
    ) -> Result<usize, AttachError> {
        let runtime = match PythonRuntime::from_file(path) {
            Ok(runtime) => runtime,
            Err(err) => {
                self.warn(format!("{}: not probing CPython: {err}", path.display()));
                return Ok(0);
            }
        };
        let plan = probes::python::plan(&runtime, self.python_api);
        for warning in plan.warnings {
            self.warn(warning);
        }
        let mut facts = plan.facts;
        if self.alloc && self.stacks && self.python_frames_wanted {
            let frames = self.enable_python_frames(programs, &runtime, bias, pid);
            if self.python_frames.is_some() {
                self.hold_at_finalize(programs, path, finalize);
            }
            if let serde_json::Value::Object(map) = &mut facts {
                map.insert("python_frames".to_owned(), frames);
            }
        }
        self.runtimes.insert("python".to_owned(), facts);
        self.attach_specs(programs, plan.specs, None)
    }

    /// Gives the eBPF side the interpreter's frame layout and marks every stack-capturing
    /// probe of the process to walk the Python stack too. Without a usable layout (another
    /// version, a stripped build) native stacks go on alone and run.json says why, once.
    /// Returns the `python_frames` fact for run.json.
    fn enable_python_frames(
        &mut self,
        programs: &mut Programs,
        runtime: &PythonRuntime,
        bias: u64,
        pid: u32,
    ) -> serde_json::Value {
        if self.python_frames.is_some() {
            return serde_json::json!({"enabled": true});
        }
        let layout = match runtime.frame_layout() {
            Ok(layout) => layout,
            Err(err) => {
                self.warn(format!("Python frames unavailable: {err}"));
                return serde_json::json!({"enabled": false, "reason": err.to_string()});
            }
        };
        let config = python_stack_config(&layout, bias);
        if let Err(err) = programs.set_python_stacks(pid, &config) {
            self.warn(format!(
                "Python frames unavailable: {err}: {}",
                error_chain(&err)
            ));
            return serde_json::json!({"enabled": false, "reason": err.to_string()});
        }
        for (id, config) in &mut self.stack_probes {
            config.stack |= STACK_PYTHON;
            if let Err(err) = programs.set_config(*id, config) {
                let message = format!(
                    "Python frames not captured at probe {id}: {err}: {}",
                    error_chain(&err)
                );
                log::warn!("{message}");
                self.warnings.push(message);
            }
        }
        self.python_frames = Some(layout);
        self.python_pids.insert(pid);
        serde_json::json!({
            "enabled": true,
            "tstate_current": format!("{:#x}", config.tstate_current),
            "offsets_from": "DWARF of the interpreter",
        })
    }

    /// Holds the process at `Py_FinalizeEx` (file offset `finalize`) until its Python frames are
    /// named: finalization frees the code objects, and the reader may lag behind the process.
    fn hold_at_finalize(
        &mut self,
        programs: &mut Programs,
        path: &std::path::Path,
        finalize: Option<u64>,
    ) {
        let result = match finalize {
            Some(offset) => programs
                .attach_python_hold(path, offset, self.scope)
                .map_err(|err| format!("{err}: {}", error_chain(&err))),
            None => Err("no Py_FinalizeEx symbol".to_owned()),
        };
        if let Err(why) = result {
            self.warn(format!(
                "Python frames whose code is freed at exit may stay unnamed: \
                 cannot hold the process at Py_FinalizeEx: {why}"
            ));
        }
    }

    /// Registers and attaches `specs`; per-probe failures become warnings.
    fn attach_specs(
        &mut self,
        programs: &mut Programs,
        specs: Vec<ProbeSpec>,
        types: Option<Arc<dyn TypeNames>>,
    ) -> Result<usize, AttachError> {
        let mut attached = 0;
        for mut spec in specs {
            let wanted = if is_gc(&spec) { self.gc } else { self.alloc };
            if !wanted {
                continue;
            }
            if let Some(reason) = &spec.placement.fallback {
                log::info!(
                    "{} in {}: probe at +0 ({reason})",
                    spec.func,
                    spec.module.display()
                );
            }
            let captures_stack = self.stacks && is_allocation(&spec);
            if captures_stack {
                spec.config.stack = STACK_CAPTURE;
                // Go code never has a uretprobe trampoline on its stack (none is placed on Go
                // functions), so the eBPF program may walk it itself, several times cheaper.
                let own_walk = spec.runtime == Runtime::Go;
                if own_walk {
                    spec.config.stack |= STACK_OWN_WALK;
                }
                if spec.placement.caller.needs_read(own_walk) {
                    spec.config.stack |= STACK_CALLER_FIXUP;
                }
                // Go code runs no CPython frames (and Go's probes never walk them).
                if self.python_frames.is_some() && spec.runtime != Runtime::Go {
                    spec.config.stack |= STACK_PYTHON;
                }
            }
            let Some(id) = self.table.register_with_types(&spec, types.clone()) else {
                self.warn(format!(
                    "more than {MAX_PROBES} probes: {} in {} not traced",
                    spec.func,
                    spec.module.display()
                ));
                continue;
            };
            if captures_stack {
                self.stack_probes.push((id, spec.config));
            }
            match programs.attach(&spec, id, self.scope) {
                Ok(()) => attached += 1,
                Err(err) if ebpf::is_fatal(&err) => return Err(err),
                Err(err) => self.warn(format!("{}: {}", err, error_chain(&err))),
            }
        }
        Ok(attached)
    }

    fn warn(&mut self, message: String) {
        log::warn!("{message}");
        self.warnings.push(message);
    }

    /// Whether any executable file of the process lacks a symbol table (to explain why no
    /// allocator was found).
    pub fn exe_is_stripped(&self) -> bool {
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap_or_default();
        ElfImage::open(&exe)
            .map(|image| !image.has_symtab())
            .unwrap_or(false)
    }
}

fn module_of(mapping: &Mapping, build_id: String) -> Module {
    Module {
        path: mapping.path.clone(),
        start: mapping.start,
        end: mapping.end,
        file_offset: mapping.offset,
        perms: mapping.perms.clone(),
        build_id,
    }
}

/// Whether the file holds a CPython interpreter (libpython or a static python executable).
fn is_python_interpreter(image: &ElfImage) -> bool {
    let has = |name: &str| {
        image
            .function_symbols()
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .is_ok()
    };
    has("Py_InitializeEx") && has("PyObject_Malloc")
}

/// What the eBPF side needs to walk the Python stack of a process whose interpreter is loaded
/// with `bias`.
fn python_stack_config(layout: &FrameLayout, bias: u64) -> tracer_common::python::PyStackConfig {
    // Offsets inside structs of a few hundred bytes: they fit in u32 (the layout check
    // bounds the frame members; the others are smaller than sizeof(PyThreadState)).
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    tracer_common::python::PyStackConfig {
        tstate_current: layout.tstate_current.wrapping_add(bias),
        tstate_cframe: small(layout.tstate_cframe),
        tstate_native_thread_id: small(layout.tstate_native_thread_id),
        cframe_current_frame: layout
            .cframe_current_frame
            .map_or(tracer_common::python::NO_CFRAME, small),
        frame_code: small(layout.frame_code),
        frame_previous: small(layout.frame_previous),
        frame_instr: small(layout.frame_instr),
        code_adaptive: small(layout.code_adaptive),
        frame_owner: small(layout.frame_owner),
    }
}

/// Whether a probe belongs to the `gc` category: GC cycles, stop-the-world pauses and
/// collections. Every other uprobe (allocators, Go's result helpers, CPython's arenas) is `alloc`.
fn is_gc(spec: &ProbeSpec) -> bool {
    use tracer_common::event::EventKind;
    [
        EventKind::GcStart,
        EventKind::GcEnd,
        EventKind::StwStart,
        EventKind::StwEnd,
    ]
    .iter()
    .any(|&kind| spec.config.kind == kind as u32)
}

/// Whether a probe's rows are allocations (which get call stacks).
fn is_allocation(spec: &ProbeSpec) -> bool {
    use tracer_common::event::EventKind;
    spec.config.kind == EventKind::Alloc as u32 || spec.config.kind == EventKind::Realloc as u32
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&s.to_string());
        out.push_str("; ");
        source = s.source();
    }
    out
}
