//! Which functions to probe in a file, with which eBPF program, and where.
//!
//! ```no_run
//! let image = alloctrace::elf::ElfImage::open("/lib/x86_64-linux-gnu/libc.so.6".as_ref()).unwrap();
//! for probe in alloctrace::probes::plan(&image) {
//!     println!("{} at {}", probe.func, probe.placement.describe());
//! }
//! ```

pub mod golang;
pub mod native;
pub mod placement;
pub mod python;

use std::{collections::BTreeMap, path::PathBuf};

use iced_x86::Register;

use tracer_common::{event::EventKind, probe::ProbeConfig};

use trace_format::names::{Domain, Runtime};

use crate::{elf::ElfImage, python::regs::SYSV_ARGS};
use placement::{Needs, PROLOGUE_BYTES, Placement, place_probe};

/// The argument layout of a C-ABI allocator entry point (native and CPython).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    /// `malloc(size)`, `valloc`, `pvalloc`, `operator new(size, ...)`.
    SizeArg0,
    /// `calloc(nmemb, size)`.
    Calloc,
    /// `realloc(ptr, size)`.
    Realloc,
    /// `reallocarray(ptr, nmemb, size)`.
    Reallocarray,
    /// `aligned_alloc(alignment, size)`, `memalign`.
    AlignArg0SizeArg1,
    /// `operator new(size, std::align_val_t, ...)`.
    SizeArg0AlignArg1,
    /// `posix_memalign(memptr, alignment, size)`.
    PosixMemalign,
    /// `free(ptr)`.
    Free,
    /// `operator delete(ptr, ...)`: may call `free(ptr)` itself, which is folded into it.
    Delete,
    /// `f(ctx, size)`: CPython's `_PyObject_Malloc`, `_PyMem_RawMalloc`, arena allocation.
    CtxSize,
    /// `f(ctx, nmemb, size)`: CPython's `_PyObject_Calloc`.
    CtxCalloc,
    /// `f(ctx, ptr, size)`: CPython's `_PyObject_Realloc`.
    CtxRealloc,
    /// `f(ctx, ptr)`: CPython's `_PyMem_RawFree`, arena release (`ptr, size`).
    CtxFree,
    /// `f(ctx, ptr)` that may call an inner free of the same pointer (`_PyObject_Free` →
    /// `_PyMem_RawFree` → `free`).
    CtxFreeOuter,
}

impl Handler {
    /// Whether the function returns an address (and so gets a return probe).
    pub fn has_return(self) -> bool {
        !matches!(
            self,
            Handler::Free | Handler::Delete | Handler::CtxFree | Handler::CtxFreeOuter
        )
    }

    /// Argument registers the entry program reads.
    pub fn arg_registers(self) -> &'static [Register] {
        let n = match self {
            Handler::SizeArg0 | Handler::Free | Handler::Delete => 1,
            Handler::Calloc
            | Handler::Realloc
            | Handler::AlignArg0SizeArg1
            | Handler::SizeArg0AlignArg1
            | Handler::CtxSize
            | Handler::CtxFree
            | Handler::CtxFreeOuter => 2,
            Handler::Reallocarray
            | Handler::PosixMemalign
            | Handler::CtxCalloc
            | Handler::CtxRealloc => 3,
        };
        &SYSV_ARGS[..n]
    }

    /// What the generic entry program reads for this layout.
    pub fn config(self) -> ProbeConfig {
        use tracer_common::probe::loc::*;
        let alloc = |size, nmemb, ptr, align, out| ProbeConfig {
            kind: if ptr == NONE {
                EventKind::Alloc as u32
            } else {
                EventKind::Realloc as u32
            },
            size,
            nmemb,
            ptr,
            align,
            out,
            ..ProbeConfig::EMPTY
        };
        let release = |ptr, outer: bool| ProbeConfig {
            kind: EventKind::Free as u32,
            ptr,
            outer: u8::from(outer),
            ..ProbeConfig::EMPTY
        };
        match self {
            Handler::SizeArg0 => alloc(ARG0, NONE, NONE, NONE, NONE),
            Handler::Calloc => alloc(ARG1, ARG0, NONE, NONE, NONE),
            Handler::Realloc => alloc(ARG1, NONE, ARG0, NONE, NONE),
            Handler::Reallocarray => alloc(ARG2, ARG1, ARG0, NONE, NONE),
            Handler::AlignArg0SizeArg1 => alloc(ARG1, NONE, NONE, ARG0, NONE),
            Handler::SizeArg0AlignArg1 => alloc(ARG0, NONE, NONE, ARG1, NONE),
            Handler::PosixMemalign => alloc(ARG2, NONE, NONE, ARG1, ARG0),
            Handler::Free => release(ARG0, false),
            Handler::Delete => release(ARG0, true),
            Handler::CtxSize => alloc(ARG1, NONE, NONE, NONE, NONE),
            Handler::CtxCalloc => alloc(ARG2, ARG1, NONE, NONE, NONE),
            Handler::CtxRealloc => alloc(ARG2, NONE, ARG1, NONE, NONE),
            Handler::CtxFree => release(ARG1, false),
            Handler::CtxFreeOuter => release(ARG1, true),
        }
    }

    /// How the probe is attached.
    pub fn attach(self) -> Attach {
        if self.has_return() {
            Attach::EntryReturn {
                entry: ALLOC_ENTRY_PROGRAM,
                ret: RETURN_PROGRAM,
            }
        } else {
            Attach::Entry {
                program: RELEASE_PROGRAM,
            }
        }
    }
}

/// eBPF program names (in `tracer-ebpf`).
pub const ALLOC_ENTRY_PROGRAM: &str = "alloc_enter";
pub const RETURN_PROGRAM: &str = "alloc_return";
pub const RELEASE_PROGRAM: &str = "release";
pub const GO_ENTRY_PROGRAM: &str = "go_alloc_enter";
pub const GO_RET_PROGRAM: &str = "go_alloc_ret";
pub const GO_SITE_PROGRAM: &str = "go_alloc_site";
pub const RUNTIME_EVENT_PROGRAM: &str = "runtime_event";
pub const RUNTIME_RETURN_PROGRAM: &str = "runtime_return";
pub const RUNTIME_STATS_PROGRAM: &str = "runtime_stats";
pub const PYTHON_FINALIZE_PROGRAM: &str = "python_finalize";

/// How a probe is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    /// An entry program only.
    Entry { program: &'static str },
    /// A uretprobe only.
    Return { program: &'static str },
    /// The same entry program at each of these file offsets (Go's RET instructions).
    At {
        program: &'static str,
        offsets: Vec<u64>,
    },
    /// An entry program and a uretprobe on the same instruction (one breakpoint).
    EntryReturn {
        entry: &'static str,
        ret: &'static str,
    },
    /// An entry program, and `result` on each of `results`: Go, where a uretprobe would corrupt
    /// goroutine stacks.
    EntryResults {
        entry: &'static str,
        result: &'static str,
        results: Vec<ResultProbe>,
    },
    /// `program` on each of `results` only: a Go helper that finishes allocations the entry
    /// probes of other functions began.
    Results {
        program: &'static str,
        results: Vec<ResultProbe>,
    },
    /// `program` (a stats program) at each of these file offsets, reading `reads` (Go's cycle
    /// end: the runtime's heap and CPU accounting besides the cycle number).
    Stats {
        program: &'static str,
        offsets: Vec<u64>,
        reads: Vec<StatRead>,
    },
    /// A USDT probe guarded by a semaphore at `ref_ctr_offset` (file offset).
    Usdt {
        program: &'static str,
        ref_ctr_offset: u64,
    },
}

impl Attach {
    /// For run.json's `kind`.
    pub fn describe(&self) -> String {
        match self {
            Attach::Entry { .. } => "uprobe".into(),
            Attach::Return { .. } => "uretprobe".into(),
            Attach::At { offsets, .. } => format!("{} uprobes", offsets.len()),
            Attach::EntryReturn { .. } => "uprobe+uretprobe".into(),
            Attach::EntryResults { results, .. } => {
                format!("uprobe+{} result uprobes", results.len())
            }
            Attach::Results { results, .. } => format!("{} result uprobes", results.len()),
            Attach::Stats { offsets, .. } => format!("{} uprobes", offsets.len()),
            Attach::Usdt { .. } => "usdt".into(),
        }
    }
}

/// A probe that reads a Go allocator's result, at a file offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultProbe {
    pub file_offset: u64,
    /// Where the result is there (`loc` register, and the offset when it is `[reg+offset]`).
    pub register: u8,
    pub offset: Option<u32>,
    /// In a slow-path helper (counted apart).
    pub helper: bool,
}

impl ResultProbe {
    /// The BPF cookie of this probe for probe id `id`.
    pub fn cookie(&self, id: u32) -> u64 {
        tracer_common::golang::result_cookie(id, self.register, self.offset, self.helper)
    }
}

/// What a runtime-event probe's values mean (they become columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueRole {
    Unused,
    /// The GC cycle number, plus `offset` (Go's `numgc` counts finished cycles, so a cycle that
    /// is starting is `numgc + 1`).
    GcCycle {
        offset: u64,
    },
    HeapLive,
    HeapGoal,
    Generation,
    Collected,
    Uncollectable,
    /// A generation fixed by the probed code (a compiler clone specialised for it).
    GenerationConst(u32),
    /// An index into a table of reason names.
    Reason(&'static [&'static str]),
}

/// One value a stats probe reads: `size` bytes at `address` (in the process), and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatRead {
    pub address: u64,
    pub size: u8,
    pub role: StatRole,
}

/// What a stats probe's value becomes in its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatRole {
    /// A column of its own, as for the three-value runtime events.
    Value(ValueRole),
    /// Part of the runtime's heap or CPU accounting (combined by `golang::cycle_figures`).
    Cycle(crate::golang::CycleValue),
}

/// Resolves a runtime's type pointers to names (Go's `*_type` → `main.Node`).
pub trait TypeNames: Send + Sync {
    fn type_name(&self, type_addr: u64) -> Option<String>;
}

/// One allocator entry point to look for.
#[derive(Clone, Copy, Debug)]
pub struct AllocatorFn {
    /// ELF symbol name.
    pub symbol: &'static str,
    /// The trace's `func` value.
    pub func: &'static str,
    pub handler: Handler,
    /// The trace's `runtime` value.
    pub runtime: Runtime,
}

/// A probe to attach.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    pub module: PathBuf,
    pub build_id: Option<String>,
    pub func: String,
    pub symbol: String,
    /// Other known names at the same address.
    pub aliases: Vec<String>,
    pub runtime: Runtime,
    /// CPython allocator domain.
    pub domain: Option<Domain>,
    /// The symbol's virtual address in the file.
    pub address: u64,
    pub placement: Placement,
    /// File offset of the probed (entry) instruction.
    pub file_offset: u64,
    pub attach: Attach,
    /// What the eBPF program reads.
    pub config: ProbeConfig,
    /// For runtime events: the meaning of `values[0..3]` and of `arg`.
    pub roles: [ValueRole; 3],
    pub arg_role: ValueRole,
}

/// The file a runtime's probes go in.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeFile<'a> {
    pub module: &'a std::path::Path,
    pub build_id: Option<&'a str>,
    pub runtime: Runtime,
}

impl ProbeSpec {
    /// A runtime-event probe (the `runtime_event` program at the placed instruction) of
    /// `symbol`, reported as `func`; the caller sets its event kind, arguments and roles.
    pub fn runtime_event(
        file: RuntimeFile<'_>,
        func: &str,
        symbol: &str,
        address: u64,
        placement: Placement,
        file_offset: u64,
    ) -> ProbeSpec {
        ProbeSpec {
            module: file.module.to_owned(),
            build_id: file.build_id.map(str::to_owned),
            func: func.to_owned(),
            symbol: symbol.to_owned(),
            aliases: Vec::new(),
            runtime: file.runtime,
            domain: None,
            address,
            placement,
            file_offset,
            attach: Attach::Entry {
                program: RUNTIME_EVENT_PROGRAM,
            },
            config: ProbeConfig::EMPTY,
            roles: [ValueRole::Unused; 3],
            arg_role: ValueRole::Unused,
        }
    }
}

/// Plans one probe per distinct address for every known allocator function defined in `image`.
pub fn plan(image: &ElfImage) -> Vec<ProbeSpec> {
    plan_functions(image, native::NATIVE_FUNCTIONS)
}

/// Plans probes for `functions` found in `image`, one per address (the first entry that resolves
/// to an address names it; later ones become aliases).
pub fn plan_functions(image: &ElfImage, functions: &[AllocatorFn]) -> Vec<ProbeSpec> {
    let symbols = image.function_symbols();
    let mut by_address: BTreeMap<u64, ProbeSpec> = BTreeMap::new();
    let mut order = Vec::new();
    for wanted in functions {
        let Ok(first) = symbols
            .binary_search_by(|s| s.name.as_str().cmp(wanted.symbol))
            .map_err(|_| ())
        else {
            continue;
        };
        // A name may be defined at several addresses (versioned symbols); probe each.
        for sym in symbols[..=first]
            .iter()
            .rev()
            .take_while(|s| s.name == wanted.symbol)
            .chain(
                symbols[first + 1..]
                    .iter()
                    .take_while(|s| s.name == wanted.symbol),
            )
        {
            if let Some(existing) = by_address.get_mut(&sym.address) {
                if existing.symbol != sym.name && !existing.aliases.contains(&sym.name) {
                    existing.aliases.push(sym.name.clone());
                }
                continue;
            }
            let Some(spec) = spec_for(image, wanted, sym.address, sym.size) else {
                continue;
            };
            order.push(sym.address);
            by_address.insert(sym.address, spec);
        }
    }
    order
        .into_iter()
        .filter_map(|a| by_address.remove(&a))
        .collect()
}

fn spec_for(image: &ElfImage, wanted: &AllocatorFn, address: u64, size: u64) -> Option<ProbeSpec> {
    let len = if size > 0 { size } else { PROLOGUE_BYTES };
    let code = image.bytes_at(address, len)?;
    let needs = Needs {
        registers: wanted.handler.arg_registers(),
        return_address: wanted.handler.has_return(),
    };
    let placement = place_probe(code, address, needs);
    let file_offset = image.file_offset(address + placement.offset)?;
    Some(ProbeSpec {
        module: image.path().to_owned(),
        build_id: image.build_id().map(str::to_owned),
        func: wanted.func.to_owned(),
        symbol: wanted.symbol.to_owned(),
        aliases: Vec::new(),
        runtime: wanted.runtime,
        domain: None,
        address,
        placement,
        file_offset,
        attach: wanted.handler.attach(),
        config: wanted.handler.config(),
        roles: [ValueRole::Unused; 3],
        arg_role: ValueRole::Unused,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Check that glibc 2.36's allocator functions are planned once per address, that the
    /// aliases are folded, and that the hot paths get emulated probe spots.
    #[test]
    fn glibc_plan() {
        let image = ElfImage::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        let plan = plan(&image);
        let by_func: BTreeMap<&str, &ProbeSpec> =
            plan.iter().map(|p| (p.func.as_str(), p)).collect();
        for func in [
            "malloc",
            "calloc",
            "realloc",
            "free",
            "posix_memalign",
            "aligned_alloc",
            "valloc",
            "pvalloc",
            "reallocarray",
        ] {
            assert!(by_func.contains_key(func), "{func} missing from {plan:#?}");
        }
        let mut addresses: Vec<u64> = plan.iter().map(|p| p.address).collect();
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), plan.len(), "one probe per address");
        assert!(by_func["free"].placement.emulated && by_func["free"].placement.offset > 0);
        assert!(by_func["malloc"].placement.emulated);
        if by_func["aligned_alloc"].address
            == image
                .function_symbols()
                .iter()
                .find(|s| s.name == "memalign")
                .unwrap()
                .address
        {
            assert!(!by_func.contains_key("memalign"));
            assert!(
                by_func["aligned_alloc"]
                    .aliases
                    .contains(&"memalign".to_string())
            );
        }
    }

    /// Check libstdc++: every operator new/delete variant is found and gets an emulated spot
    /// past `endbr64`.
    #[test]
    fn libstdcxx_plan() {
        let image = ElfImage::open(Path::new("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")).unwrap();
        let plan = plan(&image);
        assert_eq!(
            plan.iter()
                .filter(|p| p.func.starts_with("operator new"))
                .count(),
            8
        );
        assert_eq!(
            plan.iter()
                .filter(|p| p.func.starts_with("operator delete"))
                .count(),
            12
        );
        for p in &plan {
            eprintln!("{:60} {}", p.func, p.placement.describe());
        }
        // The forms programs call on every allocation must be cheap; the nothrow and aligned
        // forms may fall back (their prologues move rsp before any emulated instruction).
        let hot = [
            "operator new(unsigned long)",
            "operator new[](unsigned long)",
            "operator delete(void*)",
            "operator delete(void*, unsigned long)",
            "operator delete[](void*)",
            "operator delete[](void*, unsigned long)",
        ];
        for p in plan.iter().filter(|p| hot.contains(&p.func.as_str())) {
            assert!(
                p.placement.emulated,
                "{} {}",
                p.func,
                p.placement.describe()
            );
        }
    }
}
