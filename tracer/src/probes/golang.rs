//! Probes for Go programs: the allocator (entry after the stack check, and result probes: never a
//! uretprobe on Go code), GC cycles with the runtime's own heap figures, and stop-the-world
//! pauses, from what `crate::golang` found in the binary.
//!
//! The result of an allocation is read where the kernel emulates the probed instruction (~1 µs)
//! rather than on the allocator's RET instructions (single-stepped, ~10 µs): at the sites
//! `GoBinary::result_plans` finds, in the slow-path helpers an allocator tail-calls, at the
//! entry for size 0; only RETs with none of these keep a probe. An allocator whose every RET
//! can also have the call's size and type read on its way out has no entry probe
//! (`Ctx::fused_specs`). run.json's `runtimes.go.allocator_results` lists how every RET is
//! covered.
//!
//! Go frees memory in bulk when it sweeps, so there are no `free` rows for Go objects: the
//! `gc_end` row of each cycle carries `heap_live` (bytes marked live, gctrace's third number)
//! and `heap_goal`, from which the analysis draws the live heap.

use std::sync::Arc;

use iced_x86::Register;
use serde_json::json;
use trace_format::names::Runtime;
use tracer_common::{
    event::EventKind,
    golang::MAX_RESULT_OFFSET,
    probe::{NO_SLOT, ProbeConfig, loc},
};

use super::TypeNames;
use super::{
    Attach, GO_ENTRY_PROGRAM, GO_RET_PROGRAM, GO_SITE_PROGRAM, ProbeSpec, RUNTIME_STATS_PROGRAM,
    ResultProbe, RuntimeFile, StatRead, StatRole, ValueRole,
    placement::{CallerAt, Placement},
    python::register_loc,
};
use crate::{
    elf::ElfImage,
    golang::{
        AllocatorFunc, ArgLoc, Fused, GoBinary, GoFunc, ResultLoc, ResultPlan, ResultPlans,
        RetClass, RetPlan, StwReason,
    },
};

/// What `record` attaches for one Go binary.
pub struct GoPlan {
    pub specs: Vec<ProbeSpec>,
    /// run.json `runtimes.go`.
    pub facts: serde_json::Value,
    pub warnings: Vec<String>,
    /// Resolves the type pointers of this binary's allocation rows.
    pub types: Arc<dyn TypeNames>,
}

/// Type names of one Go binary, adjusted by its load bias (PIE).
struct GoTypes {
    binary: Arc<GoBinary>,
    bias: u64,
}

impl TypeNames for GoTypes {
    fn type_name(&self, type_addr: u64) -> Option<String> {
        self.binary.type_name(type_addr.checked_sub(self.bias)?)
    }
}

fn placement_of(spot: &crate::golang::ProbeSpot, frame_ready: bool) -> Placement {
    Placement {
        offset: spot.offset,
        instruction: spot.instruction.clone(),
        emulated: spot.emulated,
        fallback: spot.fallback.clone(),
        // Go 1.19 makes its frame before the probe (`sub rsp; mov [rsp+N],rbp; lea
        // rbp,[rsp+N]`), and `[rsp]` is then not the return address; Go 1.26+ probes its
        // `push rbp`.
        caller: caller_at(&spot.instruction, frame_ready),
    }
}

/// Where a stack walk from a probe on `instruction` finds the caller: in the frame chain once
/// the function's frame is set up, else at `[rsp]`.
fn caller_at(instruction: &str, frame_ready: bool) -> CallerAt {
    if frame_ready {
        CallerAt::Chain
    } else if instruction == "push rbp" {
        CallerAt::RspKernelReads
    } else {
        CallerAt::Rsp
    }
}

/// Whether the code from the function's entry to `offset` sets up its frame pointer.
fn frame_set_up_before(image: &ElfImage, func: &GoFunc, offset: u64) -> bool {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    let Some(code) = image.bytes_at(func.entry, offset) else {
        return false;
    };
    Decoder::with_ip(64, code, func.entry, DecoderOptions::NONE)
        .into_iter()
        .any(|i| {
            matches!(i.mnemonic(), Mnemonic::Lea | Mnemonic::Mov)
                && i.op0_register() == Register::RBP
        })
}

struct Ctx<'a> {
    binary: &'a GoBinary,
    image: &'a ElfImage,
    bias: u64,
    warnings: Vec<String>,
}

impl Ctx<'_> {
    fn base(&self, func: &GoFunc, placement: Placement) -> Option<ProbeSpec> {
        let file_offset = self.image.file_offset(func.entry + placement.offset)?;
        let file = RuntimeFile {
            module: self.binary.path(),
            build_id: self.image.build_id(),
            runtime: Runtime::Go,
        };
        Some(ProbeSpec::runtime_event(
            file,
            &func.name,
            &func.name,
            func.entry,
            placement,
            file_offset,
        ))
    }

    fn entry_spec(&mut self, func: &GoFunc, needs: &[Register]) -> Option<ProbeSpec> {
        match self.binary.entry_probe_offset(func, needs) {
            Ok(spot) => {
                let frame_ready = frame_set_up_before(self.image, func, spot.offset);
                self.base(func, placement_of(&spot, frame_ready))
            }
            Err(err) => {
                self.warnings
                    .push(format!("go: no probe on {}: {err}", func.name));
                None
            }
        }
    }

    /// The result probes of one function's plan: its sites and the RETs kept.
    fn result_probes(&mut self, plan: &ResultPlan, helper: bool) -> Vec<ResultProbe> {
        plan.rets
            .iter()
            .filter_map(|ret| self.result_probe(plan, ret, helper).map(|(_, probe)| probe))
            .collect()
    }

    /// The probe that reads one RET's result, and its offset in the function: at its site, or
    /// on the RET; `None` for a tail call or a size-0 return recorded at the entry.
    fn result_probe(
        &mut self,
        plan: &ResultPlan,
        ret: &RetPlan,
        helper: bool,
    ) -> Option<(u64, ResultProbe)> {
        let (offset, register, slot) = match &ret.class {
            RetClass::Site { offset, loc, .. } => match *loc {
                ResultLoc::Register(r) => (*offset, register_loc(r), None),
                ResultLoc::Stack(k) if k <= MAX_RESULT_OFFSET => (*offset, loc::RSP, Some(k)),
                ResultLoc::Stack(_) => (ret.ret, loc::RAX, None),
            },
            RetClass::RetProbe { .. } => (ret.ret, loc::RAX, None),
            // Without an entry probe, the size-0 return is probed on its RET (see `fused_specs`).
            RetClass::ZeroSize { .. } if ret.fused.is_some() => (ret.ret, loc::RAX, None),
            RetClass::TailCall { .. } | RetClass::ZeroSize { .. } => return None,
        };
        match self.image.file_offset(plan.func.entry + offset) {
            Some(file_offset) => Some((
                offset,
                ResultProbe {
                    file_offset,
                    register,
                    offset: slot,
                    helper,
                },
            )),
            None => {
                self.warnings.push(format!(
                    "go: {}+{offset:#x} is not in a file mapping; its results are not read",
                    plan.func.name
                ));
                None
            }
        }
    }

    /// A probe on an emulated instruction inside `func`.
    fn emulated_placement(&self, func: &GoFunc, offset: u64, instruction: String) -> Placement {
        let frame_ready = frame_set_up_before(self.image, func, offset);
        Placement {
            offset,
            caller: caller_at(&instruction, frame_ready),
            instruction,
            emulated: true,
            fallback: None,
        }
    }

    /// The probes of an allocator without an entry probe (every RET has a [`Fused`] way): per
    /// RET, its result probe reading the arguments too (`go_alloc_site`), or an entry-like
    /// probe at an earlier instruction only its calls pass, paired with its result probe as an
    /// entry probe is (a tail call's result is read by the helper's own probes).
    fn fused_specs(&mut self, alloc: &AllocatorFunc, plan: &ResultPlan) -> Vec<ProbeSpec> {
        let func = &alloc.func;
        let mut specs = Vec::new();
        for ret in &plan.rets {
            let result = self.result_probe(plan, ret, false);
            match &ret.fused {
                Some(Fused::Together { args }) => {
                    let Some((offset, probe)) = result else {
                        continue;
                    };
                    let placement = if offset == ret.ret {
                        Placement {
                            offset,
                            instruction: "ret".into(),
                            emulated: false,
                            fallback: Some(
                                "RET instructions are single-stepped; only calls that return here"
                                    .into(),
                            ),
                            // The frame is gone: `[rsp]` is the return address.
                            caller: CallerAt::Rsp,
                        }
                    } else {
                        self.emulated_placement(func, offset, site_instruction(&ret.class))
                    };
                    let Some(mut spec) = self.base(func, placement) else {
                        continue;
                    };
                    let (size, size_slot) = arg_config(args.first());
                    let (type_reg, type_slot) = arg_config(args.get(1));
                    spec.config = ProbeConfig {
                        kind: EventKind::Alloc as u32,
                        size,
                        type_reg,
                        go_size_slot: size_slot,
                        go_type_slot: type_slot,
                        ..ProbeConfig::EMPTY
                    };
                    spec.attach = Attach::Results {
                        program: GO_SITE_PROGRAM,
                        results: vec![probe],
                    };
                    specs.push(spec);
                }
                Some(Fused::Apart {
                    offset,
                    instruction,
                    args,
                }) => {
                    let placement = self.emulated_placement(func, *offset, instruction.clone());
                    let Some(mut spec) = self.base(func, placement) else {
                        continue;
                    };
                    spec.config = ProbeConfig {
                        kind: EventKind::Alloc as u32,
                        size: args.first().copied().map_or(loc::NONE, register_loc),
                        type_reg: args.get(1).copied().map_or(loc::NONE, register_loc),
                        ..ProbeConfig::EMPTY
                    };
                    spec.attach = Attach::EntryResults {
                        entry: GO_ENTRY_PROGRAM,
                        result: GO_RET_PROGRAM,
                        results: result.map(|(_, probe)| probe).into_iter().collect(),
                    };
                    specs.push(spec);
                }
                None => {}
            }
        }
        specs
    }

    fn ret_file_offsets(&mut self, func: &GoFunc) -> Vec<u64> {
        let offsets: Vec<u64> = self
            .binary
            .ret_offsets(func)
            .iter()
            .filter_map(|off| self.image.file_offset(func.entry + off))
            .collect();
        if offsets.is_empty() {
            self.warnings
                .push(format!("go: {} has no RET instruction to probe", func.name));
        }
        offsets
    }

    /// The runtime reads of a GC probe, as absolute addresses in the process.
    fn reads(
        &mut self,
        what: &str,
        fields: [Option<&crate::golang::GlobalField>; 3],
        config: &mut ProbeConfig,
    ) {
        for (i, field) in fields.into_iter().enumerate() {
            if let Some(f) = field {
                config.reads[i] = f.address() + self.bias;
                config.read_sizes[i] = u8::try_from(f.size).unwrap_or(8);
            }
        }
        let _ = what;
    }
}

/// run.json `runtimes.go.allocator_results`: how every RET of the allocators and their helpers
/// gets its result, with the count per class.
fn results_facts(plans: &ResultPlans) -> serde_json::Value {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    let describe = |plan: &ResultPlan,
                    allocator: bool,
                    counts: &mut std::collections::BTreeMap<&str, u64>| {
        let rets: Vec<serde_json::Value> = plan
            .rets
            .iter()
            .map(|r| {
                *counts.entry(r.class.name()).or_default() += 1;
                let mut v = json!({ "ret": format!("+{:#x}", r.ret), "class": r.class.name() });
                match &r.class {
                    RetClass::Site {
                        offset,
                        instruction,
                        loc,
                    } => {
                        v["site"] = json!(format!("+{offset:#x} `{instruction}`"));
                        v["read"] = json!(loc.describe());
                    }
                    RetClass::TailCall { helper } => v["helper"] = json!(helper),
                    RetClass::ZeroSize { result } => v["result"] = json!(format!("{result:#x}")),
                    RetClass::RetProbe { reason } => v["reason"] = json!(reason),
                }
                match &r.fused {
                    Some(Fused::Together { args }) => {
                        v["args_read"] = json!({
                            "with": r.fused.as_ref().map(Fused::name),
                            "size": args.first().map(ArgLoc::describe),
                            "type": args.get(1).map(ArgLoc::describe),
                        });
                    }
                    Some(Fused::Apart {
                        offset,
                        instruction,
                        args,
                    }) => {
                        v["args_read"] = json!({
                            "with": r.fused.as_ref().map(Fused::name),
                            "at": format!("+{offset:#x} `{instruction}`"),
                            "size": args.first().map(|a| format!("{a:?}").to_lowercase()),
                            "type": args.get(1).map(|a| format!("{a:?}").to_lowercase()),
                        });
                    }
                    None => {}
                }
                v
            })
            .collect();
        // A helper has none: the allocator that tail-calls it recorded the call.
        let entry_probe = allocator && plan.rets.iter().any(|r| r.fused.is_none());
        json!({
            "function": plan.func.name,
            "entry_probe": entry_probe,
            "rets": rets,
            "not_analysed": plan.gave_up,
        })
    };
    let allocators: Vec<_> = plans
        .allocators
        .iter()
        .map(|p| describe(p, true, &mut counts))
        .collect();
    let helpers: Vec<_> = plans
        .helpers
        .iter()
        .map(|p| describe(p, false, &mut counts))
        .collect();
    json!({ "classes": counts, "allocators": allocators, "helpers": helpers })
}

/// A value the probe does not read (its field was not found) leaves its column empty.
fn role_if(available: bool, role: ValueRole) -> ValueRole {
    if available { role } else { ValueRole::Unused }
}

fn located<'a, T>(ctx: &mut Ctx<'_>, what: &str, value: &'a Result<T, String>) -> Option<&'a T> {
    match value {
        Ok(v) => Some(v),
        Err(why) => {
            ctx.warnings.push(format!("go: {what} not readable: {why}"));
            None
        }
    }
}

/// Plans every Go probe for `binary` (loaded at `bias` from its link-time addresses).
pub fn plan(binary: Arc<GoBinary>, image: &ElfImage, bias: u64) -> GoPlan {
    let mut ctx = Ctx {
        binary: &binary,
        image,
        bias,
        warnings: Vec::new(),
    };
    let mut specs = Vec::new();
    let allocators = binary.allocator_functions();
    let mut entries: Vec<(&AllocatorFunc, ProbeSpec, Vec<Register>)> = Vec::new();
    for alloc in &allocators {
        let needs: Vec<Register> = [Some(alloc.size_reg), alloc.type_reg]
            .into_iter()
            .flatten()
            .collect();
        if let Some(spec) = ctx.entry_spec(&alloc.func, &needs) {
            entries.push((alloc, spec, needs));
        }
    }
    let probed: Vec<(&GoFunc, u64, &[Register])> = entries
        .iter()
        .map(|(alloc, spec, needs)| (&alloc.func, spec.placement.offset, needs.as_slice()))
        .collect();
    let plans = binary.result_plans(&probed);
    for ((alloc, mut spec, _), plan) in entries.into_iter().zip(&plans.allocators) {
        if plan.rets.is_empty() {
            ctx.warnings
                .push(format!("go: {} has no RET instruction", alloc.func.name));
            continue;
        }
        if plan.rets.iter().all(|r| r.fused.is_some()) {
            specs.extend(ctx.fused_specs(alloc, plan));
            continue;
        }
        let results = ctx.result_probes(plan, false);
        spec.config = ProbeConfig {
            kind: EventKind::Alloc as u32,
            size: register_loc(alloc.size_reg),
            type_reg: alloc
                .type_reg
                .map_or(tracer_common::probe::loc::NONE, register_loc),
            go_zero_result: plan.zero_size_result().map_or(0, |a| a + bias),
            ..ProbeConfig::EMPTY
        };
        spec.attach = Attach::EntryResults {
            entry: GO_ENTRY_PROGRAM,
            result: GO_RET_PROGRAM,
            results,
        };
        specs.push(spec);
    }
    for plan in &plans.helpers {
        let results = ctx.result_probes(plan, true);
        let Some(mut spec) = ctx.base(
            &plan.func,
            Placement {
                offset: 0,
                instruction: "(result probes only)".into(),
                emulated: true,
                fallback: None,
                caller: CallerAt::Rsp,
            },
        ) else {
            continue;
        };
        spec.attach = Attach::Results {
            program: GO_RET_PROGRAM,
            results,
        };
        specs.push(spec);
    }
    if allocators.is_empty() {
        ctx.warnings.push(format!(
            "go {}: no allocator function found",
            binary.version()
        ));
    }

    let layout = binary.runtime_layout();
    let numgc = located(&mut ctx, "memstats.numgc (GC cycle number)", &layout.numgc).cloned();
    let heap_marked = located(
        &mut ctx,
        "gcController.heapMarked (heap live)",
        &layout.heap_marked,
    )
    .cloned();
    let heap_goal = located(
        &mut ctx,
        "gcController.lastHeapGoal (heap goal)",
        &layout.heap_goal,
    )
    .cloned();
    let cycles = located(
        &mut ctx,
        "work.cycles (started cycles)",
        &layout.cycles_started,
    )
    .cloned();

    // A cycle starts: startCycle, once per cycle; work.cycles is then its number.
    if let Some(func) = located(&mut ctx, "the cycle-start function", &layout.cycle_start).cloned()
        && let Some(mut spec) = ctx.entry_spec(&func, &[])
    {
        spec.func = "runtime.gcStart".into();
        spec.config.kind = EventKind::GcStart as u32;
        ctx.reads("gc start", [cycles.as_ref(), None, None], &mut spec.config);
        spec.roles = [
            role_if(cycles.is_some(), ValueRole::GcCycle { offset: 0 }),
            ValueRole::Unused,
            ValueRole::Unused,
        ];
        specs.push(spec);
    }
    // A cycle ends: gcMarkTermination's RETs (once per cycle), after numgc, heapMarked, the next
    // goal and the runtime's CPU accounting are set. The end may come after the next cycle's
    // start; rows carry the cycle number read then, so pair by number, not by order.
    let heap_stats = located(
        &mut ctx,
        "the runtime's span accounting (heap_inuse, heap_idle, heap_released, stack_inuse)",
        &layout.heap_stats,
    )
    .cloned()
    .unwrap_or_default();
    let cpu_stats = located(
        &mut ctx,
        "the runtime's GC CPU accounting (gc_cpu_ns, cpu_capacity_ns, gomaxprocs)",
        &layout.cpu_stats,
    )
    .cloned()
    .unwrap_or_default();
    if let Some(func) = located(&mut ctx, "the cycle-end function", &layout.cycle_end).cloned() {
        let offsets = ctx.ret_file_offsets(&func);
        if let (Some(first), Some(mut spec)) = (
            offsets.first().copied(),
            ctx.base(
                &func,
                Placement {
                    offset: 0,
                    instruction: "ret".into(),
                    emulated: false,
                    fallback: Some("RET instructions are single-stepped; once per GC cycle".into()),
                    caller: CallerAt::Rsp,
                },
            ),
        ) {
            spec.func = "runtime.gcMarkTermination".into();
            spec.file_offset = first;
            spec.config.kind = EventKind::GcEnd as u32;
            let read = |field: &crate::golang::GlobalField, role| StatRead {
                address: field.address() + bias,
                size: u8::try_from(field.size).unwrap_or(8),
                role,
            };
            let mut reads = Vec::new();
            for (field, role) in [
                (&numgc, ValueRole::GcCycle { offset: 0 }),
                (&heap_marked, ValueRole::HeapLive),
                (&heap_goal, ValueRole::HeapGoal),
            ] {
                if let Some(field) = field {
                    reads.push(read(field, StatRole::Value(role)));
                }
            }
            for stat in heap_stats.iter().chain(&cpu_stats) {
                reads.push(read(&stat.field, StatRole::Cycle(stat.value)));
            }
            spec.attach = Attach::Stats {
                program: RUNTIME_STATS_PROGRAM,
                offsets,
                reads,
            };
            specs.push(spec);
        }
    }
    // Stop-the-world pauses, with the reason where the runtime passes one (Go ≥ 1.21).
    let reason = match &layout.stw_reason {
        Ok(StwReason::Argument {
            stop_register,
            start_register,
            names,
            ..
        }) => {
            let names: &'static [&'static str] = Box::leak(
                names
                    .iter()
                    .map(|n| &*Box::leak(n.clone().into_boxed_str()))
                    .collect::<Vec<&'static str>>()
                    .into_boxed_slice(),
            );
            Some((*stop_register, *start_register, names))
        }
        Ok(StwReason::PreemptOff { .. }) => {
            ctx.warnings.push(format!("go {}: stop-the-world reasons are not passed as an argument before Go 1.21; reason column left empty", binary.version()));
            None
        }
        Err(why) => {
            ctx.warnings
                .push(format!("go: stop-the-world reason not readable: {why}"));
            None
        }
    };
    for (what, located_fn, kind, register) in [
        (
            "stopTheWorldWithSema",
            &layout.stw_stop,
            EventKind::StwStart,
            reason.map(|r| r.0),
        ),
        (
            "startTheWorldWithSema",
            &layout.stw_start,
            EventKind::StwEnd,
            reason.and_then(|r| r.1),
        ),
    ] {
        let Some(func) = located(&mut ctx, what, located_fn).cloned() else {
            continue;
        };
        let needs: Vec<Register> = register.into_iter().collect();
        let Some(mut spec) = ctx.entry_spec(&func, &needs) else {
            continue;
        };
        spec.config.kind = kind as u32;
        if let (Some(register), Some((_, _, names))) = (register, reason) {
            spec.config.arg = register_loc(register);
            spec.config.arg_size = 1;
            spec.arg_role = ValueRole::Reason(names);
        }
        specs.push(spec);
    }

    let facts = json!({
        "version": binary.version(),
        "path": binary.path().display().to_string(),
        "stripped": binary.is_stripped(),
        "dwarf": binary.has_dwarf(),
        "pie": binary.is_pie(),
        "load_bias": bias,
        "allocator_functions": allocators.iter().map(|a| a.func.name.clone()).collect::<Vec<_>>(),
        "allocator_results": results_facts(&plans),
        "gc_cycle_number_from": numgc.as_ref().map(|f| format!("{}.{}", f.variable, f.field)),
        "heap_live_from": heap_marked.as_ref().map(|f| format!("{}.{}", f.variable, f.field)),
        "heap_goal_from": heap_goal.as_ref().map(|f| format!("{}.{}", f.variable, f.field)),
        "cycle_end_reads": heap_stats.iter().chain(&cpu_stats).map(|s| format!("{:?}: {}.{}", s.value, s.field.variable, s.field.field)).collect::<Vec<_>>(),
        "frees": "Go frees in bulk when it sweeps: no free rows; gc_end rows carry heap_live and heap_goal",
    });
    let types: Arc<dyn TypeNames> = Arc::new(GoTypes {
        binary: binary.clone(),
        bias,
    });
    let warnings = ctx.warnings;
    GoPlan {
        specs,
        facts,
        warnings,
        types,
    }
}

fn site_instruction(class: &RetClass) -> String {
    match class {
        RetClass::Site { instruction, .. } => instruction.clone(),
        _ => "ret".into(),
    }
}

/// `ProbeConfig` register and slot of an argument read by `go_alloc_site`.
fn arg_config(place: Option<&ArgLoc>) -> (u8, i32) {
    match place {
        Some(ArgLoc::At(ResultLoc::Register(r))) => (register_loc(*r), NO_SLOT),
        Some(ArgLoc::At(ResultLoc::Stack(k))) => (loc::RSP, i32::try_from(*k).unwrap_or(NO_SLOT)),
        // Size 0 (a size-0 return): `loc::NONE` reads as 0.
        Some(ArgLoc::Value(_)) | None => (loc::NONE, NO_SLOT),
    }
}
