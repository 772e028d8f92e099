//! Go binaries on disk: version, functions (also of stripped binaries), the allocator entry
//! points, where their probes go, type names of `*_type` pointers, and where the runtime keeps
//! its GC facts. Pure user space: everything is read from the file.
//!
//! Supported: linux/amd64 binaries of Go ≥ 1.18 (register ABI, pclntab formats of 1.18+),
//! checked against Go 1.19.8 and Go 1.27.3, normal, `-ldflags='-s -w'` and `-buildmode=pie`.
//! The facts and their sources are in `README.md` beside this file.
//!
//! ```no_run
//! use alloctrace::golang::GoBinary;
//! let go = GoBinary::open("/usr/local/bin/some-go-program".as_ref()).unwrap().unwrap();
//! println!("{} ({:?})", go.version(), go.version_tuple());
//! for alloc in go.allocator_functions() {
//!     let spot = go.entry_probe_offset(&alloc.func, &[alloc.size_reg]).unwrap();
//!     println!("{} size in {:?}: probe at {}", alloc.func.name, alloc.size_reg, spot.describe());
//! }
//! ```

mod alloc;
mod buildinfo;
mod code;
mod dwarf;
mod file;
mod layout;
mod pclntab;
mod results;
mod types;

#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet},
    io,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use iced_x86::Register;

pub use alloc::AllocatorFunc;
pub use layout::{
    CycleStat, CycleValue, GlobalField, Located, RuntimeLayout, STW_REASONS_GO127, StwReason,
    cycle_figures,
};
pub use results::{ArgLoc, Fused, ResultLoc, RetClass, RetPlan};

use file::GoFile;
use types::TypesRegion;

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error(transparent)]
    Elf(#[from] crate::elf::ElfError),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid ELF file", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    #[error("{}: Go binaries for {architecture} are not supported (only x86-64)", path.display())]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("{}: Go binary without a readable function table: {reason}", path.display())]
    NoFunctions { path: PathBuf, reason: String },
    #[error("{function}: {reason}")]
    Code { function: String, reason: String },
}

/// A function with its link-time virtual address range `[entry, end)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoFunc {
    pub name: String,
    pub entry: u64,
    pub end: u64,
}

/// Where an entry probe goes in a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpot {
    /// Offset from the function's entry.
    pub offset: u64,
    /// The probed instruction, e.g. `push rbp`.
    pub instruction: String,
    /// Whether the kernel emulates it (cheap) instead of single-stepping it.
    pub emulated: bool,
    /// Offset just past the stack-bound check's conditional jump; `None` when the function
    /// has no check (NOSPLIT).
    pub stack_check_end: Option<u64>,
    /// Set when no emulated instruction qualified: why, and what was chosen instead.
    pub fallback: Option<String>,
}

impl ProbeSpot {
    /// One line for logs and run metadata.
    pub fn describe(&self) -> String {
        let how = if self.emulated {
            "emulated"
        } else {
            "single-stepped"
        };
        let check = match self.stack_check_end {
            Some(end) => format!("after the stack check ending at +{end:#x}"),
            None => "no stack check".to_string(),
        };
        match &self.fallback {
            None => format!(
                "+{:#x} `{}` ({how}, {check})",
                self.offset, self.instruction
            ),
            Some(why) => format!(
                "+{:#x} `{}` ({how}, {check}; fallback: {why})",
                self.offset, self.instruction
            ),
        }
    }
}

/// Where the function list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionSource {
    Symtab,
    Pclntab,
}

/// A Go executable, read once.
pub struct GoBinary {
    file: GoFile,
    version: String,
    version_tuple: (u32, u32),
    functions: Vec<GoFunc>,
    function_source: FunctionSource,
    types: Result<TypesRegion, String>,
    moduledata: Result<pclntab::ModuleData, String>,
    type_cache: Mutex<HashMap<u64, Option<String>>>,
    dwarf: OnceLock<Result<dwarf::DwarfFacts, String>>,
    /// Indices into `functions`, sorted by entry address.
    by_address: OnceLock<Vec<usize>>,
}

/// How the results of one function's RETs are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultPlan {
    pub func: GoFunc,
    pub rets: Vec<RetPlan>,
    /// Why the function's code was not analysed (then every RET keeps its probe).
    pub gave_up: Option<String>,
}

impl ResultPlan {
    /// The constant a size-0 call returns, when the entry probe records those calls.
    pub fn zero_size_result(&self) -> Option<u64> {
        self.rets.iter().find_map(|r| match r.class {
            RetClass::ZeroSize { result } => Some(result),
            _ => None,
        })
    }
}

/// The result plans of the allocator functions and of the helpers they tail-call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultPlans {
    /// One per allocator, in the order asked for.
    pub allocators: Vec<ResultPlan>,
    /// Helpers whose own results are probed because an allocator's RET is a tail call into
    /// them (`runtime.mallocgcTinySlowPath`, ...), each called by the allocators only so.
    pub helpers: Vec<ResultPlan>,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("path", &self.file.elf.path())
            .field("version", &self.version)
            .field("functions", &self.functions.len())
            .field("function_source", &self.function_source)
            .finish_non_exhaustive()
    }
}

impl GoBinary {
    /// `Ok(None)` when the file is not a Go binary (not ELF, or neither `.go.buildinfo` nor a
    /// pclntab nor Go runtime symbols).
    pub fn open(path: &Path) -> Result<Option<GoBinary>, GoError> {
        let Some(file) = GoFile::open(path)? else {
            return Ok(None);
        };
        let version =
            buildinfo::from_buildinfo(&file).or_else(|| buildinfo::from_runtime_symbol(&file));
        let pcln = pclntab::find(&file);
        let runtime_symbols =
            file.symbol("runtime.main").is_some() || file.symbol("runtime.mallocgc").is_some();
        if version.is_none() && pcln.is_err() && !runtime_symbols {
            return Ok(None);
        }
        let moduledata = pcln
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|p| pclntab::find_moduledata(&file, p));

        let (functions, function_source) = if file.has_symtab {
            let funcs = file
                .elf
                .function_symbols()
                .iter()
                .filter(|s| s.size > 0)
                .map(|s| GoFunc {
                    name: s.name.clone(),
                    entry: s.address,
                    end: s.address.saturating_add(s.size),
                })
                .collect();
            (funcs, FunctionSource::Symtab)
        } else {
            let no_functions = |reason: String| GoError::NoFunctions {
                path: path.to_owned(),
                reason,
            };
            let p = pcln.as_ref().map_err(|e| no_functions(e.clone()))?;
            let text = if p.text_start != 0 {
                p.text_start
            } else {
                moduledata
                    .as_ref()
                    .map(|m| m.text)
                    .map_err(|e| no_functions(format!("pclntab has no text start and {e}")))?
            };
            if !file.segment_of(text).is_some_and(|s| s.executable) {
                return Err(no_functions(format!(
                    "text start {text:#x} is not in an executable segment"
                )));
            }
            let mut funcs = pclntab::functions(&file, p, text).map_err(no_functions)?;
            funcs.sort_by(|a, b| (&a.name, a.entry).cmp(&(&b.name, b.entry)));
            funcs.dedup();
            (funcs, FunctionSource::Pclntab)
        };

        let types = match (file.symbol("runtime.types"), file.symbol("runtime.etypes")) {
            (Some(start), Some(end)) if end.address > start.address => Ok(TypesRegion {
                start: start.address,
                end: end.address,
            }),
            _ => moduledata
                .as_ref()
                .map_err(Clone::clone)
                .map(|m| TypesRegion {
                    start: m.types,
                    end: m.etypes,
                }),
        };

        let version_text = version.unwrap_or_else(|| "unknown".to_string());
        let version_tuple = buildinfo::parse_tuple(&version_text).unwrap_or((0, 0));
        Ok(Some(GoBinary {
            file,
            version: version_text,
            version_tuple,
            functions,
            function_source,
            types,
            moduledata,
            type_cache: Mutex::new(HashMap::new()),
            dwarf: OnceLock::new(),
            by_address: OnceLock::new(),
        }))
    }

    pub fn path(&self) -> &Path {
        self.file.elf.path()
    }

    /// The Go version, e.g. `go1.19.8` (`unknown` when neither `.go.buildinfo` nor
    /// `runtime.buildVersion` could be read).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `(1, 19)` for `go1.19.8`; `(0, 0)` when unknown.
    pub fn version_tuple(&self) -> (u32, u32) {
        self.version_tuple
    }

    /// No `.symtab` (e.g. built with `-ldflags=-s`).
    pub fn is_stripped(&self) -> bool {
        !self.file.has_symtab
    }

    /// Whether the file has DWARF debug information.
    pub fn has_dwarf(&self) -> bool {
        dwarf::present(&self.file)
    }

    /// Position-independent (`ET_DYN`): add the load bias from `/proc/PID/maps` to every
    /// address this module returns.
    pub fn is_pie(&self) -> bool {
        self.file.pie
    }

    /// Every function with its link-time `[entry, end)`, sorted by name: from `.symtab` when
    /// present, otherwise from `.gopclntab`.
    pub fn functions(&self) -> &[GoFunc] {
        &self.functions
    }

    /// Where [`GoBinary::functions`] came from.
    pub fn function_source(&self) -> FunctionSource {
        self.function_source
    }

    /// The function called `name` (the first, by address, if there are several). `.symtab`
    /// may name an ABI0 function `name.abi0` where `.gopclntab` says `name` (pclntab names
    /// get `.abi0` only in a wrapper pair); either form finds the other.
    pub fn function(&self, name: &str) -> Option<&GoFunc> {
        let exact = |name: &str| {
            let at = self.functions.partition_point(|f| f.name.as_str() < name);
            self.functions.get(at).filter(|f| f.name == name)
        };
        exact(name).or_else(|| match name.strip_suffix(".abi0") {
            Some(plain) => exact(plain),
            None => exact(&format!("{name}.abi0")),
        })
    }

    /// The functions that together see every heap allocation exactly once, with the registers
    /// holding size and type pointer at entry (see `alloc.rs` for the rule).
    pub fn allocator_functions(&self) -> Vec<AllocatorFunc> {
        alloc::allocator_functions(&self.functions)
    }

    fn code(&self, func: &GoFunc) -> Result<&[u8], GoError> {
        let err = |reason: &str| GoError::Code {
            function: func.name.clone(),
            reason: reason.to_string(),
        };
        if func.end <= func.entry {
            return Err(err("empty address range"));
        }
        self.file
            .read(func.entry, func.end - func.entry)
            .ok_or_else(|| err("code not mapped from the file"))
    }

    /// Offsets from `func.entry` of every RET instruction in `[entry, end)`.
    pub fn ret_offsets(&self, func: &GoFunc) -> Vec<u64> {
        self.code(func)
            .map(|code| code::ret_offsets(code, func.entry))
            .unwrap_or_default()
    }

    /// The function whose code contains `address` (link-time).
    pub fn function_at(&self, address: u64) -> Option<&GoFunc> {
        let order = self.by_address.get_or_init(|| {
            let mut order: Vec<usize> = (0..self.functions.len()).collect();
            order.sort_by_key(|&i| self.functions[i].entry);
            order
        });
        let at = order.partition_point(|&i| self.functions[i].entry <= address);
        let f = &self.functions[*order.get(at.checked_sub(1)?)?];
        (address < f.end).then_some(f)
    }

    /// Where the results of `allocators` (each with its entry probe's offset and the registers
    /// of the arguments a row records, size first) are read: for every RET, a site before it, a
    /// tail call into a helper whose results are probed, a size-0 return recorded at the entry,
    /// or the RET itself; and, where every RET allows it, how the calls are recorded without
    /// the entry probe (see `results.rs`).
    pub fn result_plans(&self, allocators: &[(&GoFunc, u64, &[Register])]) -> ResultPlans {
        let callee = |address: u64| {
            self.function_at(address)
                .filter(|f| f.entry == address)
                .map(|f| f.name.clone())
        };
        let candidates: Vec<String> = alloc::result_helpers(&self.functions)
            .into_iter()
            .map(|f| f.name.clone())
            .collect();
        let leaves: Vec<&GoFunc> = allocators.iter().map(|(func, _, _)| *func).collect();
        let dispatched_only = self.dispatched_only(&leaves);
        let analyse = |func: &GoFunc,
                       entry_probe: u64,
                       helpers: &[String],
                       args: Option<&[Register]>| match self.code(func) {
            Ok(code) => {
                let caller_slots = args
                    .filter(|_| dispatched_only.contains(&func.entry))
                    .and_then(|regs| self.caller_spills(func, regs))
                    .unwrap_or_default();
                results::analyse(
                    code,
                    func.entry,
                    entry_probe,
                    helpers,
                    args,
                    &caller_slots,
                    &callee,
                )
            }
            Err(err) => results::Analysis {
                gave_up: Some(err.to_string()),
                ..results::Analysis::default()
            },
        };
        let analyses: Vec<results::Analysis> = allocators
            .iter()
            .map(|(func, probe, args)| analyse(func, *probe, &candidates, Some(args)))
            .collect();
        // A helper that an allocator also calls before its allocation ends would report that
        // result early: then no tail call into it counts as covered.
        let tail_only = results::tail_only_helpers(&analyses);
        let mut used: Vec<String> = Vec::new();
        let mut plans = ResultPlans::default();
        for ((func, _, _), mut analysis) in allocators.iter().zip(analyses) {
            for ret in &mut analysis.rets {
                if let RetClass::TailCall { helper } = &ret.class {
                    if tail_only.contains(helper) {
                        if !used.contains(helper) {
                            used.push(helper.clone());
                        }
                    } else {
                        ret.class = RetClass::RetProbe {
                            reason: format!("{helper} is also called before an allocation ends"),
                        };
                    }
                }
            }
            plans.allocators.push(ResultPlan {
                func: (*func).clone(),
                rets: analysis.rets,
                gave_up: analysis.gave_up,
            });
        }
        used.sort();
        for name in used {
            let Some(func) = self.function(&name) else {
                continue;
            };
            // Sites after the stack check only: a morestack restart re-runs the prologue.
            let bound = self
                .entry_probe_offset(func, &[])
                .map(|spot| spot.offset)
                .unwrap_or(0);
            let analysis = analyse(func, bound, &[], None);
            plans.helpers.push(ResultPlan {
                func: func.clone(),
                rets: analysis.rets,
                gave_up: analysis.gave_up,
            });
        }
        plans
    }

    /// Where an entry probe can sit: the first instruction after the stack-bound check that
    /// the kernel emulates, before any of `needs` is written (see `code.rs`).
    /// For a Go 1.26+ leaf that only `runtime.mallocgc` calls (see [`Self::dispatched_only`]):
    /// where `mallocgc` keeps the arguments `regs` it passes across every call to it, as offsets
    /// from the leaf's entry stack pointer (see `results::caller_spills`). `None` when `mallocgc`
    /// does not keep them.
    fn caller_spills(&self, leaf: &GoFunc, regs: &[Register]) -> Option<Vec<i64>> {
        let dispatcher = self.function(alloc::DISPATCHER)?;
        let callee = |address: u64| {
            self.function_at(address)
                .filter(|f| f.entry == address)
                .map(|f| f.name.clone())
        };
        let code = self.code(dispatcher).ok()?;
        results::caller_spills(code, dispatcher.entry, leaf.entry, regs, &callee).ok()
    }

    /// The entries of those of `leaves` referenced nowhere but in `runtime.mallocgc` and in
    /// themselves (a leaf's morestack block jumps back to its entry), in one pass over the
    /// loaded segments: no rel32 field anywhere in executable segments resolves to them
    /// (calls, jumps, RIP-relative operands; a byte pattern that only looks like one errs on the
    /// safe side), and their addresses are nowhere as aligned words in other loaded segments
    /// (function values, and the addends of their PIE relocations). Empty without `mallocgc`;
    /// never `mallocgc` itself.
    fn dispatched_only(&self, leaves: &[&GoFunc]) -> HashSet<u64> {
        let Some(dispatcher) = self.function(alloc::DISPATCHER) else {
            return HashSet::new();
        };
        let ends: HashMap<u64, u64> = leaves
            .iter()
            .filter(|f| f.entry != dispatcher.entry)
            .map(|f| (f.entry, f.end))
            .collect();
        // Go ≤ 1.25 has no leaves: no pass over the whole binary at attach for nothing.
        if ends.is_empty() {
            return HashSet::new();
        }
        let mut referenced = HashSet::new();
        for seg in &self.file.segments {
            let Some(bytes) = self.file.read(seg.address, seg.file_size) else {
                return HashSet::new();
            };
            if seg.executable {
                for (q, w) in bytes.windows(4).enumerate() {
                    let at = seg.address + q as u64;
                    let rel = i32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                    let target = (at + 4).wrapping_add_signed(i64::from(rel));
                    if let Some(&end) = ends.get(&target)
                        && !(dispatcher.entry..dispatcher.end).contains(&at)
                        && !(target..end).contains(&at)
                    {
                        referenced.insert(target);
                    }
                }
            } else {
                let skip = (8 - seg.address % 8) % 8;
                for w in bytes
                    .get(skip as usize..)
                    .unwrap_or_default()
                    .chunks_exact(8)
                {
                    let word = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
                    if ends.contains_key(&word) {
                        referenced.insert(word);
                    }
                }
            }
        }
        ends.into_keys()
            .filter(|e| !referenced.contains(e))
            .collect()
    }

    pub fn entry_probe_offset(
        &self,
        func: &GoFunc,
        needs: &[Register],
    ) -> Result<ProbeSpot, GoError> {
        let code = self.code(func)?;
        code::entry_probe(code, func.entry, needs).map_err(|reason| GoError::Code {
            function: func.name.clone(),
            reason,
        })
    }

    /// Link-time address of `runtime.firstmoduledata` and how it was found (symbol,
    /// `.go.module` section, or a scan for the pclntab address), or why it was not.
    pub fn moduledata(&self) -> Result<(u64, String), String> {
        self.moduledata
            .as_ref()
            .map(|m| (m.address, m.source.clone()))
            .map_err(Clone::clone)
    }

    /// The types region `[start, end)` of this binary, or why it is unknown.
    pub fn types_region(&self) -> Result<(u64, u64), String> {
        self.types.clone().map(|r| (r.start, r.end))
    }

    /// Name of the runtime type descriptor at link-time address `type_addr` (as passed to the
    /// allocator, minus the load bias of a PIE), e.g. `main.Node`, `[]uint8`, `*main.T`.
    /// `None` outside the binary's types region (types made at run time by `reflect`).
    pub fn type_name(&self, type_addr: u64) -> Option<String> {
        let region = *self.types.as_ref().ok()?;
        if let Ok(cache) = self.type_cache.lock()
            && let Some(hit) = cache.get(&type_addr)
        {
            return hit.clone();
        }
        let name = types::type_name(&self.file, region, type_addr);
        if let Ok(mut cache) = self.type_cache.lock() {
            cache.insert(type_addr, name.clone());
        }
        name
    }

    fn dwarf(&self) -> Result<&dwarf::DwarfFacts, String> {
        self.dwarf
            .get_or_init(|| {
                if !self.has_dwarf() {
                    return Err("no DWARF (built with -ldflags=-w or stripped)".to_string());
                }
                let wanted = dwarf::Wanted {
                    structs: layout::STRUCTS,
                    variables: layout::VARIABLES,
                    function: &|name: &str| {
                        name.starts_with("runtime.mallocgc")
                            || name == "runtime.stopTheWorldWithSema"
                            || name == "runtime.startTheWorldWithSema"
                    },
                };
                dwarf::read(&self.file, &wanted)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Input parameter names of a runtime allocator or stop-the-world function, from DWARF.
    pub fn dwarf_params(&self, name: &str) -> Result<Vec<String>, String> {
        let dwarf = self.dwarf()?;
        dwarf
            .params(name)
            .map(<[String]>::to_vec)
            .ok_or_else(|| format!("no DWARF subprogram {name}"))
    }

    /// Addresses of the GC facts, the once-per-cycle functions and the stop-the-world
    /// functions of this binary.
    pub fn runtime_layout(&self) -> RuntimeLayout {
        let function = |name: &str| self.function(name).cloned();
        let inputs = layout::LayoutInputs {
            file: &self.file,
            dwarf: self.dwarf(),
            function: &function,
            version: self.version_tuple,
        };
        layout::runtime_layout(&inputs)
    }
}
