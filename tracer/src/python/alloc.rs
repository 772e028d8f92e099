//! Python allocator probes: which functions, which argument registers, where in the prologue,
//! and what nests under what.

use std::collections::{BTreeSet, HashMap, VecDeque};

use iced_x86::{FlowControl, Instruction, OpKind, Register};

use super::{
    AllocKind, ArgRegs, BuildFacts, Domain, FoundBy, Layer, Linkage, PyProbe, PyVersion,
    binary::Binary,
    tables::{Table, Tables},
};
use crate::probes::placement::{Needs, place_probe};

const RDI: Register = Register::RDI;
const RSI: Register = Register::RSI;
const RDX: Register = Register::RDX;

/// One allocator function to look for.
struct Wanted {
    name: &'static str,
    domain: Domain,
    kind: AllocKind,
    layer: Layer,
    args: ArgRegs,
    /// For stripped builds: the table and slot holding this function by default.
    table_slot: Option<(&'static str, u8)>,
}

const fn size(reg: Register) -> ArgRegs {
    ArgRegs {
        ptr: None,
        nmemb: None,
        size: Some(reg),
    }
}
const fn nmemb_size(nmemb: Register, size: Register) -> ArgRegs {
    ArgRegs {
        ptr: None,
        nmemb: Some(nmemb),
        size: Some(size),
    }
}
const fn ptr_size(ptr: Register, size: Register) -> ArgRegs {
    ArgRegs {
        ptr: Some(ptr),
        nmemb: None,
        size: Some(size),
    }
}
const fn ptr(reg: Register) -> ArgRegs {
    ArgRegs {
        ptr: Some(reg),
        nmemb: None,
        size: None,
    }
}

const fn w(
    name: &'static str,
    domain: Domain,
    kind: AllocKind,
    layer: Layer,
    args: ArgRegs,
    table_slot: Option<(&'static str, u8)>,
) -> Wanted {
    Wanted {
        name,
        domain,
        kind,
        layer,
        args,
        table_slot,
    }
}

use AllocKind::*;
use Domain::{Mem, Obj, Raw};
use Layer::{Allocator, Api};

/// In priority order: when two entries resolve to one address the first names the probe.
/// Implementations take `ctx` first (`void *_PyObject_Malloc(void *ctx, size_t size)`), the
/// public functions do not (`void *PyObject_Malloc(size_t size)`).
const WANTED: &[Wanted] = &[
    w(
        "_PyObject_Malloc",
        Obj,
        Alloc,
        Allocator,
        size(RSI),
        Some(("_PyObject", 1)),
    ),
    w(
        "_PyObject_Calloc",
        Obj,
        Calloc,
        Allocator,
        nmemb_size(RSI, RDX),
        Some(("_PyObject", 2)),
    ),
    w(
        "_PyObject_Realloc",
        Obj,
        Realloc,
        Allocator,
        ptr_size(RSI, RDX),
        Some(("_PyObject", 3)),
    ),
    w(
        "_PyObject_Free",
        Obj,
        Free,
        Allocator,
        ptr(RSI),
        Some(("_PyObject", 4)),
    ),
    w(
        "_PyMem_RawMalloc",
        Raw,
        Alloc,
        Allocator,
        size(RSI),
        Some(("_PyMem_Raw", 1)),
    ),
    w(
        "_PyMem_RawCalloc",
        Raw,
        Calloc,
        Allocator,
        nmemb_size(RSI, RDX),
        Some(("_PyMem_Raw", 2)),
    ),
    w(
        "_PyMem_RawRealloc",
        Raw,
        Realloc,
        Allocator,
        ptr_size(RSI, RDX),
        Some(("_PyMem_Raw", 3)),
    ),
    w(
        "_PyMem_RawFree",
        Raw,
        Free,
        Allocator,
        ptr(RSI),
        Some(("_PyMem_Raw", 4)),
    ),
    w(
        "_PyObject_ArenaMmap",
        Domain::Arena,
        ArenaAlloc,
        Layer::Arena,
        size(RSI),
        Some(("_PyObject_Arena", 1)),
    ),
    w(
        "_PyObject_ArenaMunmap",
        Domain::Arena,
        ArenaFree,
        Layer::Arena,
        ptr_size(RSI, RDX),
        Some(("_PyObject_Arena", 2)),
    ),
    // 3.12+ renamed them (Objects/obmalloc.c); still reached only through the arena table,
    // now `_PyRuntime.allocators.obj_arena`.
    w(
        "_PyMem_ArenaAlloc",
        Domain::Arena,
        ArenaAlloc,
        Layer::Arena,
        size(RSI),
        Some(("_PyObject_Arena", 1)),
    ),
    w(
        "_PyMem_ArenaFree",
        Domain::Arena,
        ArenaFree,
        Layer::Arena,
        ptr_size(RSI, RDX),
        Some(("_PyObject_Arena", 2)),
    ),
    // Builds without mmap use malloc'ed arenas.
    w(
        "_PyObject_ArenaMalloc",
        Domain::Arena,
        ArenaAlloc,
        Layer::Arena,
        size(RSI),
        None,
    ),
    w(
        "_PyObject_ArenaFree",
        Domain::Arena,
        ArenaFree,
        Layer::Arena,
        ptr_size(RSI, RDX),
        None,
    ),
    // 3.11+: the frame data stack (`_PyThreadState_BumpFramePointerSlow`) takes its chunks
    // from the arena allocator through these (16 KiB and up; pymalloc's arenas are 1 MiB).
    w(
        "_PyObject_VirtualAlloc",
        Domain::Arena,
        ArenaAlloc,
        Api,
        size(RDI),
        None,
    ),
    w(
        "_PyObject_VirtualFree",
        Domain::Arena,
        ArenaFree,
        Api,
        ptr_size(RDI, RSI),
        None,
    ),
    w("PyObject_Malloc", Obj, Alloc, Api, size(RDI), None),
    w(
        "PyObject_Calloc",
        Obj,
        Calloc,
        Api,
        nmemb_size(RDI, RSI),
        None,
    ),
    w(
        "PyObject_Realloc",
        Obj,
        Realloc,
        Api,
        ptr_size(RDI, RSI),
        None,
    ),
    w("PyObject_Free", Obj, Free, Api, ptr(RDI), None),
    w("PyMem_Malloc", Mem, Alloc, Api, size(RDI), None),
    w("PyMem_Calloc", Mem, Calloc, Api, nmemb_size(RDI, RSI), None),
    w("PyMem_Realloc", Mem, Realloc, Api, ptr_size(RDI, RSI), None),
    w("PyMem_Free", Mem, Free, Api, ptr(RDI), None),
    w("PyMem_RawMalloc", Raw, Alloc, Api, size(RDI), None),
    w(
        "PyMem_RawCalloc",
        Raw,
        Calloc,
        Api,
        nmemb_size(RDI, RSI),
        None,
    ),
    w(
        "PyMem_RawRealloc",
        Raw,
        Realloc,
        Api,
        ptr_size(RDI, RSI),
        None,
    ),
    w("PyMem_RawFree", Raw, Free, Api, ptr(RDI), None),
];

/// libc functions whose probes fold under a Python probe.
const LIBC: [&str; 8] = [
    "malloc",
    "calloc",
    "realloc",
    "free",
    "mmap",
    "mmap64",
    "munmap",
    "posix_memalign",
];

/// Bytes examined for a function whose size is unknown (stripped).
const UNKNOWN_SIZE_MAX: u64 = 4096;

fn table<'a>(tables: &'a Tables, name: &str) -> Option<&'a Table> {
    tables.all().find(|t| t.name == name)
}

/// Address of each wanted function, with how it was found.
fn resolve(bin: &Binary, tables: &Tables, wanted: &Wanted) -> Vec<(u64, u64, FoundBy)> {
    let by_symbol: Vec<(u64, u64, FoundBy)> = bin
        .functions_named(wanted.name)
        .into_iter()
        .map(|s| (s.address, s.size, FoundBy::Symbol))
        .collect();
    if !by_symbol.is_empty() {
        return by_symbol;
    }
    let Some((table_name, slot)) = wanted.table_slot else {
        return Vec::new();
    };
    let Some(t) = table(tables, table_name) else {
        return Vec::new();
    };
    let Some(address) = t.slot(slot) else {
        return Vec::new();
    };
    // A pymalloc-less build puts the raw functions in the object table: they are found (and
    // named) as the raw ones.
    if table_name == "_PyObject"
        && table(tables, "_PyMem_Raw").and_then(|r| r.slot(slot)) == Some(address)
    {
        return Vec::new();
    }
    let size = bin.function_at(address).map_or(0, |s| s.size);
    vec![(
        address,
        size,
        FoundBy::AllocatorTable {
            table: t.name,
            table_address: t.address,
            slot,
            via: t.via,
        },
    )]
}

pub(crate) fn plan(bin: &Binary, tables: &Tables) -> Vec<PyProbe> {
    let mut probes: Vec<PyProbe> = Vec::new();
    let mut index_by_address: HashMap<u64, usize> = HashMap::new();
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    for wanted in WANTED {
        for (address, size, found_by) in resolve(bin, tables, wanted) {
            if let Some(&i) = index_by_address.get(&address) {
                let existing = &mut probes[i];
                if existing.func != wanted.name
                    && !existing.aliases.iter().any(|a| a == wanted.name)
                {
                    existing.aliases.push(wanted.name.to_owned());
                }
                continue;
            }
            let Some(code) = bin.function_code(address, size, UNKNOWN_SIZE_MAX) else {
                continue;
            };
            let has_return = wanted.kind.has_return();
            let registers = wanted.args.registers();
            let placement = place_probe(
                code,
                address,
                Needs {
                    registers: &registers,
                    return_address: has_return,
                },
            );
            let Some(file_offset) = address
                .checked_add(placement.offset)
                .and_then(|a| bin.image.file_offset(a))
            else {
                continue;
            };
            index_by_address.insert(address, probes.len());
            sizes.insert(address, size);
            probes.push(PyProbe {
                func: wanted.name.to_owned(),
                aliases: Vec::new(),
                domain: wanted.domain,
                kind: wanted.kind,
                layer: wanted.layer,
                args: wanted.args,
                has_return,
                address,
                placement,
                file_offset,
                found_by,
                nests: Vec::new(),
            });
        }
    }
    let names: HashMap<u64, String> = probes.iter().map(|p| (p.address, p.func.clone())).collect();
    let names_by_symbol: HashMap<&str, &str> = probes
        .iter()
        .flat_map(|p| {
            std::iter::once(p.func.as_str())
                .chain(p.aliases.iter().map(String::as_str))
                .map(move |n| (n, p.func.as_str()))
        })
        .collect();
    let nests: Vec<Vec<String>> = probes
        .iter()
        .map(|p| reachable(bin, tables, p.address, &sizes, &names, &names_by_symbol))
        .collect();
    for (probe, nests) in probes.iter_mut().zip(nests) {
        probe.nests = nests;
    }
    probes
}

/// Probed functions and libc allocator functions reachable from the function at `start`
/// through direct calls/jumps, PLT stubs and allocator-table slots, descending only into
/// helpers that are neither exported nor probed (pymalloc's static functions), a few levels
/// deep.
fn reachable(
    bin: &Binary,
    tables: &Tables,
    start: u64,
    sizes: &HashMap<u64, u64>,
    probes: &HashMap<u64, String>,
    probe_symbols: &HashMap<&str, &str>,
) -> Vec<String> {
    const MAX_DEPTH: usize = 4;
    const MAX_FUNCTIONS: usize = 64;
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::from([start]);
    let mut queue = VecDeque::from([(start, 0usize)]);
    while let Some((address, depth)) = queue.pop_front() {
        let size = sizes
            .get(&address)
            .copied()
            .or_else(|| bin.function_at(address).map(|s| s.size))
            .unwrap_or(0);
        let Some(code) = bin.function_code(address, size, UNKNOWN_SIZE_MAX) else {
            continue;
        };
        let end = address.saturating_add(code.len() as u64);
        let instructions = Binary::decode(code, address);
        let mut targets: Vec<u64> = instructions.iter().filter_map(direct_target).collect();
        // A table slot is only read to call through it.
        targets.extend(
            bin.data_addresses(&instructions)
                .into_iter()
                .filter_map(|(_, data)| tables.slot_at(data).map(|(_, _, function)| function)),
        );
        {
            for target in targets {
                if target == start {
                    continue;
                }
                if (address..end).contains(&target) {
                    continue;
                }
                if let Some(name) = probes.get(&target) {
                    found.insert(name.clone());
                    continue;
                }
                if let Some(name) = bin.plt_target(target) {
                    if let Some(probe) = probe_symbols.get(name) {
                        found.insert((*probe).to_owned());
                    } else if LIBC.contains(&name) {
                        found.insert(format!("libc:{name}"));
                    }
                    continue;
                }
                let exported = bin
                    .function_at(target)
                    .is_some_and(|s| bin.is_exported(&s.name));
                if !exported
                    && depth + 1 < MAX_DEPTH
                    && seen.len() < MAX_FUNCTIONS
                    && bin.is_executable_address(target)
                    && seen.insert(target)
                {
                    queue.push_back((target, depth + 1));
                }
            }
        }
    }
    found.into_iter().collect()
}

/// The target of a direct call or jump.
fn direct_target(instr: &Instruction) -> Option<u64> {
    matches!(
        instr.flow_control(),
        FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
    )
    .then_some(())
    .filter(|()| instr.op0_kind() == OpKind::NearBranch64)
    .map(|()| instr.near_branch_target())
}

/// Sites in `.text` that compare a register with `target` as an immediate: the guard of a
/// speculatively devirtualized (and usually inlined) call through an allocator table.
fn devirtualized_sites(bin: &Binary, target: u64) -> usize {
    let Some(text) = bin.section(".text") else {
        return 0;
    };
    let Some(code) = bin.section_data(".text") else {
        return 0;
    };
    Binary::decode(code, text.address)
        .iter()
        .filter(|i| {
            i.mnemonic() == iced_x86::Mnemonic::Cmp
                && i.op_count() == 2
                && matches!(i.op1_kind(), OpKind::Immediate32to64 | OpKind::Immediate32)
                && i.immediate(1) == target
        })
        .count()
}

/// Whether `function`'s own code compares with `target` (cheap check of one function).
fn compares_with(bin: &Binary, function: &str, target: u64) -> bool {
    let Some(func) = bin.function(function) else {
        return false;
    };
    let Some(code) = bin.function_code(func.address, func.size, 1024) else {
        return false;
    };
    Binary::decode(code, func.address).iter().any(|i| {
        i.mnemonic() == iced_x86::Mnemonic::Cmp
            && i.op_count() == 2
            && matches!(i.op1_kind(), OpKind::Immediate32to64 | OpKind::Immediate32)
            && i.immediate(1) == target
    })
}

const DEBUG_BUILD_MARKERS: [&str; 4] = [
    "_Py_RefTotal",
    "_Py_NegativeRefcount",
    "_Py_GetGlobalRefTotal",
    "_Py_GetRefTotal",
];

pub(crate) fn build_facts(bin: &Binary, tables: &Tables) -> BuildFacts {
    let mut evidence = Vec::new();
    let linkage = if bin.shared_library {
        evidence.push(format!(
            "{} is a shared library (ET_DYN, no PT_INTERP)",
            bin.path().display()
        ));
        Linkage::Shared
    } else {
        evidence.push(format!(
            "{} is an executable defining the interpreter",
            bin.path().display()
        ));
        Linkage::Static
    };
    let has_symtab = bin.image.has_symtab();
    let debug_info = bin.section(".debug_info");
    let has_debug_info = debug_info.is_some_and(|s| !s.compressed && s.file_range.is_some());
    if let Some(s) = debug_info
        && s.compressed
    {
        evidence.push(".debug_info is compressed (not read)".to_owned());
    }

    let obj_malloc = tables.obj.as_ref().and_then(|t| t.slot(1));
    let raw_malloc = tables.raw.as_ref().and_then(|t| t.slot(1));
    let pymalloc = match (obj_malloc, raw_malloc) {
        (Some(obj), Some(raw)) => {
            evidence.push(format!(
                "_PyObject.malloc = {obj:#x}, _PyMem_Raw.malloc = {raw:#x}: pymalloc {}",
                if obj != raw { "enabled" } else { "disabled" }
            ));
            obj != raw
        }
        _ => {
            // Without tables (before 3.6, or unrecognized code): pymalloc's functions or its
            // statistics entry point (only compiled WITH_PYMALLOC before 3.6).
            let marker = ["_PyObject_Malloc", "_PyObject_DebugMallocStats"]
                .into_iter()
                .find(|m| bin.function(m).is_some());
            evidence.push(format!(
                "allocator tables not recovered; {}",
                marker.map_or("no pymalloc function symbol".to_owned(), |m| format!(
                    "{m} defined"
                ))
            ));
            marker.is_some()
        }
    };

    let allocator_inlined = match obj_malloc {
        Some(target) if pymalloc => {
            let inlined = bin.function("_PyObject_Malloc").is_none()
                && (compares_with(bin, "PyObject_Malloc", target)
                    || compares_with(bin, "PyMem_Malloc", target));
            if inlined {
                evidence.push(format!(
                    "no _PyObject_Malloc symbol; exported PyObject_Malloc/PyMem_Malloc compare the \
                     table slot with {target:#x} and run pymalloc inline (speculative \
                     devirtualization: LTO/PGO build)"
                ));
            }
            inlined
        }
        _ => false,
    };

    let debug_build = DEBUG_BUILD_MARKERS
        .iter()
        .find(|m| bin.function(m).is_some() || bin.object(m).is_some());
    if let Some(marker) = debug_build {
        evidence.push(format!("{marker} defined: Py_DEBUG build"));
    }
    let usdt = bin.section(".note.stapsdt").is_some();
    if usdt {
        evidence.push(".note.stapsdt present: built --with-dtrace".to_owned());
    }
    BuildFacts {
        linkage,
        has_symtab,
        has_debug_info,
        allocator_inlined,
        pymalloc,
        debug_build: debug_build.is_some(),
        usdt,
        evidence,
    }
}

pub(crate) fn limitations(
    bin: &Binary,
    version: &PyVersion,
    build: &BuildFacts,
    tables: &Tables,
) -> Vec<String> {
    let mut out = Vec::new();
    let probes = plan(bin, tables);
    let has = |name: &str| {
        probes
            .iter()
            .any(|p| p.func == name || p.aliases.iter().any(|a| a == name))
    };

    if !version.at_least(3, 6) {
        out.push(format!(
            "Python {version}: no allocator tables before 3.6 (PEP 445 landed in 3.4 without the \
             pymalloc mem domain); only the exported PyObject_*/PyMem_* functions are probed"
        ));
    }
    if build.allocator_inlined {
        let obj_malloc = tables.obj.as_ref().and_then(|t| t.slot(1)).unwrap_or(0);
        let obj_free = tables.obj.as_ref().and_then(|t| t.slot(4)).unwrap_or(0);
        let malloc_sites = devirtualized_sites(bin, obj_malloc);
        let free_sites = devirtualized_sites(bin, obj_free);
        out.push(format!(
            "pymalloc is inlined (LTO/PGO): no _PyObject_Malloc symbol, and {malloc_sites} call \
             sites test `_PyObject.malloc == {obj_malloc:#x}` and then allocate inline \
             ({free_sites} such sites for free at {obj_free:#x}); allocations and frees made at \
             those sites pass no probe and are missed"
        ));
        out.push(
            "still traced: every call into the exported PyObject_Malloc/Calloc/Realloc/Free, \
             PyMem_* and PyMem_Raw* functions (from extension modules and the interpreter's \
             non-inlined call sites; each runs the whole allocator, so the sizes are right), and \
             the out-of-line copies of _PyObject_Malloc/_PyObject_Free/... whose addresses are \
             recovered from the allocator tables"
                .to_owned(),
        );
        out.push(
            "for complete numbers run the program with PYTHONMALLOC=malloc: every domain's \
             table then points to _PyMem_RawMalloc & co., the inlined pymalloc paths are skipped \
             (their guard fails) and every Python allocation reaches libc malloc/free, which the \
             native probes trace (the Python domain is only known at the exported functions); \
             the memory behaviour is then libc's, not pymalloc's"
                .to_owned(),
        );
    }
    if !build.has_symtab && !build.allocator_inlined {
        out.push(
            "no .symtab: allocator implementations found through the allocator tables only"
                .to_owned(),
        );
    }
    for name in ["_PyObject_Malloc", "_PyMem_RawMalloc"] {
        if build.pymalloc && !has(name) && version.at_least(3, 6) {
            out.push(format!("{name} not found: its layer is not probed"));
        }
    }
    if !build.pymalloc && version.at_least(3, 6) {
        out.push(
            "built without pymalloc: every domain uses _PyMem_RawMalloc & co. (libc)".to_owned(),
        );
    }
    out.extend(version_limitations(version));
    if (version.major, version.minor) == (3, 13) {
        out.push(
            "3.13: automatic collections call gc_collect_main with GENERATION_AUTO (-1) and \
             the collector picks the generation inside it: their gc_start/gc_end rows have an \
             empty gc_generation (explicit gc.collect(n) calls carry theirs)"
                .to_owned(),
        );
    }
    if !probes.iter().any(|p| p.layer == Layer::Arena) {
        out.push(
            "no arena allocator function found (not in this build's symbols or tables): arena \
             mmap/munmap are only seen through the native mmap/munmap probes if any"
                .to_owned(),
        );
    }
    if build.debug_build {
        out.push(
            "Py_DEBUG build: the debug allocator hooks are installed by default, so the \
             Allocator-layer probes see each request grown by the debug padding; only the Api \
             layer sees the requested size"
                .to_owned(),
        );
    }
    out.push(
        "if the process runs with PYTHONMALLOC=debug or pymalloc_debug, or -X dev, the tables \
         point to _PyMem_Debug* hooks that call the implementations with size + 3*sizeof(size_t) \
         (`lea 0x18(%rsi),%rsi` in _PyMem_DebugRawMalloc, 3.11 release build) and hand out \
         pointer + 16: Allocator-layer sizes and pointers are then the padded ones, the Api layer \
         has the program's"
            .to_owned(),
    );
    out.push(
        "PYTHONMALLOC=malloc: _PyObject_*/arena probes stay silent, _PyMem_Raw* serve all three \
         domains (attach the Api layer to keep the domain)"
            .to_owned(),
    );
    out
}

/// The newest CPython whose layouts were checked (allocator functions, collections, frames).
pub(crate) const NEWEST_KNOWN: (u32, u32) = (3, 13);

/// What a version newer than [`NEWEST_KNOWN`] is not supported for (empty for known ones).
pub(crate) fn version_limitations(version: &PyVersion) -> Vec<String> {
    if (version.major, version.minor) <= NEWEST_KNOWN {
        return Vec::new();
    }
    vec![format!(
        "CPython {version} is newer than the versions alloctrace knows (3.6–3.13): allocator \
         and collection probes are placed by symbol as for 3.13 and may miss what it changed; \
         Python frames (--python-frames) are not recorded"
    )]
}
