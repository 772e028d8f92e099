//! Finding the target's allocators in its mapped files and attaching probes to them, with the
//! table of every probe attached (their ids name the rows' `func`).

use std::collections::HashSet;

use analysis::run::{Module, Probe};
use tracer_common::probe::{FIRST_UPROBE_ID, MAX_PROBES, SYSCALL_PROBES};

use crate::{
    ebpf::{self, AttachError, Programs},
    elf::ElfImage,
    probes::{self, ProbeSpec},
    procmaps::{self, Mapping},
};

/// Name and runtime of each probe id.
pub struct ProbeTable {
    names: Vec<Option<(String, &'static str)>>,
    pub probes: Vec<Probe>,
    next_id: u32,
}

impl ProbeTable {
    pub fn new(syscalls: bool) -> ProbeTable {
        let mut table = ProbeTable {
            names: vec![None; MAX_PROBES as usize],
            probes: Vec::new(),
            next_id: FIRST_UPROBE_ID,
        };
        if syscalls {
            for (id, name) in SYSCALL_PROBES {
                table.names[id as usize] =
                    Some((name.to_owned(), analysis::schema::runtime::NATIVE));
                table.probes.push(Probe {
                    id,
                    func: name.to_owned(),
                    runtime: analysis::schema::runtime::NATIVE.to_owned(),
                    kind: "tracepoint".to_owned(),
                    symbol: format!("syscalls:sys_enter_{name}+sys_exit_{name}"),
                    ..Probe::default()
                });
            }
        }
        table
    }

    /// `(func, runtime)` of a probe id.
    pub fn name(&self, id: u32) -> Option<(&str, &'static str)> {
        self.names
            .get(id as usize)?
            .as_ref()
            .map(|(f, r)| (f.as_str(), *r))
    }

    pub fn uprobe_count(&self) -> usize {
        self.probes
            .iter()
            .filter(|p| p.id >= FIRST_UPROBE_ID)
            .count()
    }

    fn register(&mut self, spec: &ProbeSpec) -> Option<u32> {
        let id = self.next_id;
        if id >= MAX_PROBES {
            return None;
        }
        self.next_id += 1;
        self.names[id as usize] = Some((spec.func.clone(), spec.runtime));
        self.probes.push(Probe {
            id,
            func: spec.func.clone(),
            runtime: spec.runtime.to_owned(),
            kind: ebpf::probe_kind(spec.handler).to_owned(),
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

/// The probes of one traced process.
pub struct Attacher {
    pub pid: u32,
    pub table: ProbeTable,
    pub modules: Vec<Module>,
    pub warnings: Vec<String>,
    scanned: HashSet<(String, u64)>,
}

impl Attacher {
    pub fn new(pid: u32, syscalls: bool) -> Attacher {
        Attacher {
            pid,
            table: ProbeTable::new(syscalls),
            modules: Vec::new(),
            warnings: Vec::new(),
            scanned: HashSet::new(),
        }
    }

    /// Reads the process's mappings and attaches probes in every executable file not seen yet.
    /// Per-probe failures become warnings; a conflict with another tool or the process vanishing
    /// are errors.
    pub fn scan(&mut self, programs: &mut Programs) -> Result<usize, AttachError> {
        let maps =
            procmaps::read(self.pid).map_err(|_| AttachError::ProcessGone { pid: self.pid })?;
        let mut attached = 0;
        for mapping in maps.iter().filter(|m| m.is_file() && m.is_executable()) {
            if !self.scanned.insert((mapping.dev.clone(), mapping.inode)) {
                continue;
            }
            attached += self.attach_module(programs, mapping)?;
        }
        Ok(attached)
    }

    fn attach_module(
        &mut self,
        programs: &mut Programs,
        mapping: &Mapping,
    ) -> Result<usize, AttachError> {
        let path = mapping.open_path(self.pid);
        let image = match ElfImage::open(&path) {
            Ok(image) => image,
            Err(err) => {
                self.warn(format!("skipping {}: {err}", mapping.path));
                return Ok(0);
            }
        };
        self.modules.push(Module {
            path: mapping.path.clone(),
            start: mapping.start,
            end: mapping.end,
            file_offset: mapping.offset,
            perms: mapping.perms.clone(),
            build_id: image.build_id().unwrap_or_default().to_owned(),
        });
        let mut attached = 0;
        for spec in probes::plan(&image) {
            if let Some(reason) = &spec.placement.fallback {
                log::info!("{} in {}: probe at +0 ({reason})", spec.func, mapping.path);
            }
            let Some(id) = self.table.register(&spec) else {
                self.warn(format!(
                    "more than {MAX_PROBES} probes: {} in {} not traced",
                    spec.func, mapping.path
                ));
                continue;
            };
            match programs.attach(&spec, id, self.pid) {
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
