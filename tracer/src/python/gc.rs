//! Garbage-collection points: USDT `gc__start`/`gc__done` when the build has them, and the
//! function that runs once per collection for a uprobe + uretprobe pair.
//!
//! In CPython 3.10–3.12 that function is `gc_collect_main(tstate, generation, *n_collected,
//! *n_uncollectable, nofail)` (`collect(...)` in 3.6–3.9, often as `.constprop` clones whose
//! argument registers differ from the prototype, hence DWARF). Every collection passes through
//! it: `gc.collect()`, `PyGC_Collect()`, the automatic collection (`_PyObject_GC_Link` →
//! `gc_collect_generations` → `gc_collect_with_callback`, the last two inlined in pyenv 3.11.7)
//! and `_PyGC_CollectNoFail()` at shutdown (with NULL out-pointers). It returns
//! `collected + uncollectable` and, when the out-pointers are not NULL, stores the two counts
//! through them before returning; it also adds them to
//! `tstate->interp->gc.generation_stats[generation]`, whose offsets [`GcStatsLayout`] gives.

use iced_x86::{FlowControl, OpKind, Register};

use super::{
    PyVersion,
    binary::Binary,
    dwarf::{self, CompUnit},
    regs::SYSV_ARGS,
    usdt::UsdtProbe,
};
use crate::probes::placement::{Needs, Placement, place_probe};

/// Where one value is, for the eBPF side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcValue {
    /// An argument register at the entry probe; `bytes` of it are the value (4 for `int`).
    EntryRegister { register: Register, bytes: u8 },
    /// A constant: the compiler specialised this copy of the function for it (e.g. the
    /// generation in `collect.constprop.0`, called only for full collections).
    Constant(i64),
    /// The return register at the return probe.
    ReturnRegister { register: Register, bytes: u8 },
    /// A `Py_ssize_t *` argument (register at entry) that the function writes through before
    /// returning: save the pointer at entry, read 8 bytes through it at return. May be NULL.
    OutPointer { register: Register },
}

/// A function that runs once per collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcFunction {
    pub symbol: String,
    pub address: u64,
    pub size: u64,
    pub placement: Placement,
    /// File offset of the entry probe (`address + placement.offset`).
    pub file_offset: u64,
    /// The `PyThreadState *` argument (for the stats fields through [`GcStatsLayout`]).
    pub tstate: Option<GcValue>,
    pub generation: Option<GcValue>,
    pub collected: Option<GcValue>,
    pub uncollectable: Option<GcValue>,
    /// `collected + uncollectable` (the return value).
    pub total: Option<GcValue>,
    /// Functions with a direct call to it (found by disassembling `.text`).
    pub callers: Vec<String>,
    /// Where the argument registers come from.
    pub params_from: String,
}

/// Offsets to read a generation's cumulative stats:
/// `*(tstate + tstate_interp) + interp_gc + gc_generation_stats + generation * stats_size +
/// {collections, collected, uncollectable}` (each a `Py_ssize_t`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcStatsLayout {
    pub tstate_interp: u64,
    pub interp_gc: u64,
    pub gc_generation_stats: u64,
    pub generations: u64,
    pub stats_size: u64,
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
}

/// Everything known about observing collections in this build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcPoints {
    /// `python:gc__start(int generation)`.
    pub usdt_start: Option<UsdtProbe>,
    /// `python:gc__done(Py_ssize_t collected_plus_uncollectable)`.
    pub usdt_done: Option<UsdtProbe>,
    /// Once-per-collection functions (several when the compiler cloned it).
    pub functions: Vec<GcFunction>,
    pub stats: Option<GcStatsLayout>,
    pub notes: Vec<String>,
}

fn is_collect_symbol(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or(name);
    base == "gc_collect_main" || base == "collect"
}

pub(crate) fn points(bin: &Binary, version: &PyVersion, usdt: Vec<UsdtProbe>) -> GcPoints {
    let mut out = GcPoints::default();
    for probe in usdt {
        if probe.provider == "python" && probe.name == "gc__start" {
            out.usdt_start = Some(probe);
        } else if probe.provider == "python" && probe.name == "gc__done" {
            out.usdt_done = Some(probe);
        }
    }
    if out.usdt_start.is_some() {
        out.notes.push(
            "USDT python:gc__start(generation) fires in gc_collect_main after the debug output, \
             python:gc__done(collected + uncollectable) before it returns; both are guarded by \
             their semaphores (attach with ref_ctr_offset)"
                .to_owned(),
        );
    }

    let mut candidates: Vec<(String, u64, u64)> = bin
        .image
        .function_symbols()
        .iter()
        .filter(|s| is_collect_symbol(&s.name) && s.size > 0)
        .map(|s| (s.name.clone(), s.address, s.size))
        .collect();
    candidates.sort_by_key(|c| c.1);
    candidates.dedup_by_key(|c| c.1);
    if candidates.is_empty() {
        out.notes.push(if bin.image.has_symtab() {
            "no gc_collect_main/collect symbol: inlined in this build".to_owned()
        } else {
            "no .symtab: the collection function has no symbol (use USDT if present)".to_owned()
        });
    }

    let callers = callers_of(bin, &candidates.iter().map(|c| c.1).collect::<Vec<_>>());
    let unit = candidates.first().and_then(|c| dwarf::unit_for(bin, c.1));
    for (symbol, address, size) in &candidates {
        let Some(function) = describe(
            bin,
            version,
            unit.as_ref(),
            symbol,
            *address,
            *size,
            &callers,
        ) else {
            out.notes.push(format!(
                "{symbol}: arguments unknown (no DWARF, unknown prototype)"
            ));
            continue;
        };
        out.functions.push(function);
    }
    out.stats = unit.as_ref().and_then(stats_layout);
    if out.stats.is_none() && !candidates.is_empty() {
        out.notes
            .push("no DWARF for the gc state: generation_stats offsets unknown".to_owned());
    }
    out
}

fn describe(
    bin: &Binary,
    version: &PyVersion,
    unit: Option<&CompUnit<'_>>,
    symbol: &str,
    address: u64,
    size: u64,
    callers: &[(u64, String)],
) -> Option<GcFunction> {
    let by_name = |params: &[dwarf::Param], name: &str| {
        params
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.register_at_entry)
    };
    let info = unit.and_then(|u| u.function_at(address));
    let generation_constant = info.as_ref().and_then(|info| {
        info.params
            .iter()
            .find(|p| p.name == "generation")
            .and_then(|p| p.const_value)
    });
    let (tstate, generation, n_collected, n_uncollectable, returns_total, params_from) = match info
    {
        Some(info) => (
            by_name(&info.params, "tstate"),
            by_name(&info.params, "generation"),
            by_name(&info.params, "n_collected"),
            by_name(&info.params, "n_uncollectable"),
            info.returns_value,
            "DWARF: DW_AT_location of each DW_TAG_formal_parameter at the entry address".to_owned(),
        ),
        None if symbol == "gc_collect_main"
            && version.at_least(3, 10)
            && !version.at_least(3, 13) =>
        {
            (
                Some(SYSV_ARGS[0]),
                Some(SYSV_ARGS[1]),
                Some(SYSV_ARGS[2]),
                Some(SYSV_ARGS[3]),
                true,
                "CPython 3.10–3.12 prototype gc_collect_main(tstate, generation, n_collected, \
                 n_uncollectable, nofail) in SysV order (no DWARF; not a compiler clone)"
                    .to_owned(),
            )
        }
        None => return None,
    };
    let code = bin.function_code(address, size, 1 << 16)?;
    let needs: Vec<Register> = [tstate, generation, n_collected, n_uncollectable]
        .into_iter()
        .flatten()
        .collect();
    let placement = place_probe(
        code,
        address,
        Needs {
            registers: &needs,
            return_address: true,
        },
    );
    let file_offset = bin
        .image
        .file_offset(address.checked_add(placement.offset)?)?;
    Some(GcFunction {
        symbol: symbol.to_owned(),
        address,
        size,
        placement,
        file_offset,
        tstate: tstate.map(|register| GcValue::EntryRegister { register, bytes: 8 }),
        generation: generation
            .map(|register| GcValue::EntryRegister { register, bytes: 4 })
            .or(generation_constant.map(GcValue::Constant)),
        collected: n_collected.map(|register| GcValue::OutPointer { register }),
        uncollectable: n_uncollectable.map(|register| GcValue::OutPointer { register }),
        total: returns_total.then_some(GcValue::ReturnRegister {
            register: Register::RAX,
            bytes: 8,
        }),
        callers: callers
            .iter()
            .filter(|(target, _)| *target == address)
            .map(|(_, caller)| caller.clone())
            .collect(),
        params_from,
    })
}

/// `(callee, caller name)` for every direct call in `.text` to one of `targets`.
fn callers_of(bin: &Binary, targets: &[u64]) -> Vec<(u64, String)> {
    if targets.is_empty() {
        return Vec::new();
    }
    let (Some(text), Some(code)) = (bin.section(".text"), bin.section_data(".text")) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, String)> = Vec::new();
    for instr in Binary::decode(code, text.address) {
        if !matches!(
            instr.flow_control(),
            FlowControl::Call | FlowControl::UnconditionalBranch
        ) || instr.op0_kind() != OpKind::NearBranch64
        {
            continue;
        }
        let target = instr.near_branch_target();
        if !targets.contains(&target) {
            continue;
        }
        let caller = bin
            .function_containing(instr.ip())
            .map_or_else(|| format!("{:#x}", instr.ip()), |s| s.name.clone());
        if !targets
            .iter()
            .any(|&t| bin.function_at(t).is_some_and(|s| s.name == caller))
            && !out.iter().any(|(t, c)| *t == target && *c == caller)
        {
            out.push((target, caller));
        }
    }
    out.sort();
    out
}

fn stats_layout(unit: &CompUnit<'_>) -> Option<GcStatsLayout> {
    let ts = unit.struct_layout("_ts")?;
    let is = unit.struct_layout("_is")?;
    let gc = unit.struct_layout("_gc_runtime_state")?;
    let stats = unit.struct_layout("gc_generation_stats")?;
    let generation_stats = gc.member("generation_stats")?;
    Some(GcStatsLayout {
        tstate_interp: ts.member("interp")?.offset,
        interp_gc: is.member("gc")?.offset,
        gc_generation_stats: generation_stats.offset,
        generations: generation_stats.array_len?,
        stats_size: stats.size,
        collections: stats.member("collections")?.offset,
        collected: stats.member("collected")?.offset,
        uncollectable: stats.member("uncollectable")?.offset,
    })
}
