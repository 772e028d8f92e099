//! Probes for CPython: its allocator domains (pymalloc's object allocator, the raw domain,
//! arenas) and its garbage collections, from what `crate::python` found in the interpreter.

use iced_x86::Register;
use serde_json::json;
use trace_format::names::{Domain, Runtime};
use tracer_common::{
    event::EventKind,
    probe::{
        ProbeConfig, RUNTIME_DEREF_STASH, RUNTIME_NO_EMIT, RUNTIME_STASH,
        loc::{self, NONE},
    },
};

use super::{
    Attach, ProbeSpec, RUNTIME_EVENT_PROGRAM, RUNTIME_RETURN_PROGRAM, RuntimeFile, ValueRole,
};
use crate::python::{AllocKind, GcValue, Layer, PyProbe, PythonRuntime, UsdtLocation, UsdtProbe};

/// What `record` attaches for one interpreter, and what it tells the user.
pub struct PythonPlan {
    pub specs: Vec<ProbeSpec>,
    /// run.json `runtimes.python`.
    pub facts: serde_json::Value,
    /// One line each, printed and kept in run.json.
    pub warnings: Vec<String>,
}

/// The eBPF `loc` of a register (sub-registers map to their full register).
pub fn register_loc(register: Register) -> u8 {
    match register.full_register() {
        Register::RAX => loc::RAX,
        Register::RBX => loc::RBX,
        Register::RCX => loc::RCX,
        Register::RDX => loc::RDX,
        Register::RSI => loc::RSI,
        Register::RDI => loc::RDI,
        Register::R8 => loc::R8,
        Register::R9 => loc::R9,
        Register::R10 => loc::R10,
        Register::R11 => loc::R11,
        Register::R12 => loc::R12,
        Register::R13 => loc::R13,
        Register::R14 => loc::R14,
        Register::R15 => loc::R15,
        Register::RBP => loc::RBP,
        Register::RSP => loc::RSP,
        _ => NONE,
    }
}

fn reg(register: Option<Register>) -> u8 {
    register.map_or(NONE, register_loc)
}

fn spec_base(
    rt: &PythonRuntime,
    func: &str,
    symbol: &str,
    placement: super::placement::Placement,
    address: u64,
    file_offset: u64,
) -> ProbeSpec {
    let file = RuntimeFile {
        module: rt.interpreter_file(),
        build_id: rt.build_id(),
        runtime: Runtime::Python,
    };
    ProbeSpec::runtime_event(file, func, symbol, address, placement, file_offset)
}

fn allocator_spec(rt: &PythonRuntime, p: &PyProbe) -> ProbeSpec {
    let mut spec = spec_base(
        rt,
        &p.func,
        &p.func,
        p.placement.clone(),
        p.address,
        p.file_offset,
    );
    spec.aliases = p.aliases.clone();
    spec.domain = Some(p.domain);
    let a = &p.args;
    let alloc = |kind: EventKind| ProbeConfig {
        kind: kind as u32,
        size: reg(a.size),
        nmemb: reg(a.nmemb),
        ptr: reg(a.ptr),
        ..ProbeConfig::EMPTY
    };
    match p.kind {
        AllocKind::Alloc | AllocKind::Calloc => {
            spec.config = alloc(EventKind::Alloc);
            spec.attach = Attach::EntryReturn {
                entry: super::ALLOC_ENTRY_PROGRAM,
                ret: super::RETURN_PROGRAM,
            };
        }
        AllocKind::Realloc => {
            spec.config = alloc(EventKind::Realloc);
            spec.attach = Attach::EntryReturn {
                entry: super::ALLOC_ENTRY_PROGRAM,
                ret: super::RETURN_PROGRAM,
            };
        }
        AllocKind::Free => {
            // A Python-layer free passes large blocks on to the raw domain and libc with the
            // same pointer: fold those into it.
            spec.config = ProbeConfig {
                kind: EventKind::Free as u32,
                ptr: reg(a.ptr),
                outer: 1,
                ..ProbeConfig::EMPTY
            };
            spec.attach = Attach::Entry {
                program: super::RELEASE_PROGRAM,
            };
        }
        // Arenas are recorded apart from the object allocations they serve (an arena is
        // obtained inside an object allocation), through the runtime-event programs, which
        // keep their own per-thread slots instead of the allocation nesting.
        AllocKind::ArenaAlloc => {
            spec.config = ProbeConfig {
                kind: EventKind::RegionAlloc as u32,
                out: reg(a.size),
                runtime: RUNTIME_STASH | RUNTIME_NO_EMIT,
                stash_base: 2,
                ..ProbeConfig::EMPTY
            };
            spec.attach = Attach::EntryReturn {
                entry: RUNTIME_EVENT_PROGRAM,
                ret: RUNTIME_RETURN_PROGRAM,
            };
        }
        AllocKind::ArenaFree => {
            spec.config = ProbeConfig {
                kind: EventKind::RegionFree as u32,
                arg: reg(a.ptr),
                ..ProbeConfig::EMPTY
            };
            spec.attach = Attach::Entry {
                program: RUNTIME_EVENT_PROGRAM,
            };
        }
    }
    spec
}

/// A USDT argument as the runtime-event program reads it.
fn usdt_arg(config: &mut ProbeConfig, probe: &UsdtProbe, index: usize) -> bool {
    let Some(arg) = probe.args.get(index) else {
        return false;
    };
    config.arg_size = arg.size;
    match &arg.location {
        UsdtLocation::Register(r) => {
            config.arg = register_loc(*r);
            config.arg != NONE
        }
        UsdtLocation::Memory {
            base: Some(base),
            index: None,
            offset,
            symbol: None,
            ..
        } => {
            config.arg = register_loc(*base);
            config.arg_deref = 1;
            config.arg_offset = i32::try_from(*offset).unwrap_or(0);
            config.arg != NONE
        }
        _ => false,
    }
}

fn usdt_spec(
    rt: &PythonRuntime,
    probe: &UsdtProbe,
    kind: EventKind,
    role: ValueRole,
) -> Option<ProbeSpec> {
    let placement = super::placement::Placement {
        offset: 0,
        instruction: "nop (USDT site)".into(),
        emulated: true,
        fallback: None,
        caller: super::placement::CallerAt::Rsp,
    };
    let mut spec = spec_base(
        rt,
        &format!("python:{}", probe.name),
        &probe.name,
        placement,
        probe.pc,
        probe.file_offset,
    );
    spec.config.kind = kind as u32;
    if !usdt_arg(&mut spec.config, probe, 0) {
        return None;
    }
    spec.arg_role = role;
    spec.attach = match probe.semaphore_offset {
        Some(offset) => Attach::Usdt {
            program: RUNTIME_EVENT_PROGRAM,
            ref_ctr_offset: offset,
        },
        None => Attach::Entry {
            program: RUNTIME_EVENT_PROGRAM,
        },
    };
    Some(spec)
}

/// The probes for collections: USDT `gc__start`/`gc__done` when the build has them, else an
/// entry probe (generation, and the out-pointers saved) and a return probe (the counts read
/// through them) on the function that runs once per collection.
fn gc_specs(rt: &PythonRuntime, warnings: &mut Vec<String>) -> Vec<ProbeSpec> {
    let points = rt.gc_points();
    if let (Some(start), Some(done)) = (&points.usdt_start, &points.usdt_done) {
        let specs: Vec<ProbeSpec> = [
            usdt_spec(rt, start, EventKind::GcStart, ValueRole::Generation),
            // gc__done reports collected + uncollectable as one number.
            usdt_spec(rt, done, EventKind::GcEnd, ValueRole::Collected),
        ]
        .into_iter()
        .flatten()
        .collect();
        if specs.len() == 2 {
            return specs;
        }
        warnings
            .push("python: cannot read the arguments of the gc__start/gc__done USDT probes".into());
        return Vec::new();
    }
    let mut specs = Vec::new();
    for f in &points.functions {
        let mut start = spec_base(
            rt,
            "gc_collect",
            &f.symbol,
            f.placement.clone(),
            f.address,
            f.file_offset,
        );
        start.config.kind = EventKind::GcStart as u32;
        match &f.generation {
            Some(GcValue::EntryRegister { register, bytes }) => {
                start.config.arg = register_loc(*register);
                start.config.arg_size = *bytes;
                start.arg_role = ValueRole::Generation;
            }
            Some(GcValue::Constant(c)) => {
                start.arg_role = ValueRole::GenerationConst(u32::try_from(*c).unwrap_or(0))
            }
            _ => {}
        }
        let out = |v: &Option<GcValue>| match v {
            Some(GcValue::OutPointer { register }) => register_loc(*register),
            _ => NONE,
        };
        start.config.out = out(&f.collected);
        start.config.nmemb = out(&f.uncollectable);
        start.config.runtime = RUNTIME_STASH;
        start.config.stash_base = 0;
        start.attach = Attach::Entry {
            program: RUNTIME_EVENT_PROGRAM,
        };
        // The end of the collection: same instruction, its own probe id (another event kind).
        let mut end = start.clone();
        end.config.kind = EventKind::GcEnd as u32;
        end.config.runtime = RUNTIME_STASH | RUNTIME_DEREF_STASH;
        end.roles = [
            ValueRole::Collected,
            ValueRole::Uncollectable,
            ValueRole::Unused,
        ];
        end.arg_role = ValueRole::Unused;
        end.attach = Attach::Return {
            program: RUNTIME_RETURN_PROGRAM,
        };
        // The entry's stash must not be overwritten by the end probe's own entry half: the end
        // probe is a return probe only.
        specs.push(end);
        specs.push(start);
    }
    if specs.is_empty() {
        warnings.push(format!(
            "python {}: no USDT probes and no collection function to probe: collections are not traced",
            version_text(rt)
        ));
    }
    specs
}

fn version_text(rt: &PythonRuntime) -> String {
    let (a, b, c) = rt.version();
    format!("{a}.{b}.{c}")
}

/// Plans every CPython probe for `rt`. `api_layer` also probes the public `PyObject_*` /
/// `PyMem_*` functions, which tells the `obj` and `mem` domains apart (pymalloc serves both
/// through the same functions) at the cost of single-stepped breakpoints.
pub fn plan(rt: &PythonRuntime, api_layer: bool) -> PythonPlan {
    let mut warnings: Vec<String> = Vec::new();
    let build = rt.build();
    let mut specs: Vec<ProbeSpec> = rt
        .allocator_probes()
        .iter()
        .filter(|p| {
            api_layer
                || p.layer != Layer::Api
                || p.kind == AllocKind::ArenaAlloc
                || p.kind == AllocKind::ArenaFree
                || p.domain == Domain::Arena
        })
        .map(|p| allocator_spec(rt, p))
        .collect();
    specs.extend(gc_specs(rt, &mut warnings));
    let limitations = rt.limitations();
    if build.allocator_inlined {
        warnings.push(format!(
            "python {} at {} inlines its object allocator (LTO): most Python allocations pass no probe; \
             run the program with PYTHONMALLOC=malloc to trace every allocation through libc",
            version_text(rt),
            rt.interpreter_file().display()
        ));
    }
    let facts = json!({
        "version": version_text(rt),
        "interpreter_file": rt.interpreter_file().display().to_string(),
        "build_id": rt.build_id(),
        "linkage": format!("{:?}", build.linkage),
        "has_symtab": build.has_symtab,
        "has_debug_info": build.has_debug_info,
        "allocator_inlined": build.allocator_inlined,
        "pymalloc": build.pymalloc,
        "usdt": build.usdt,
        "api_layer_probes": api_layer,
        "limitations": limitations,
    });
    PythonPlan {
        specs,
        facts,
        warnings,
    }
}
