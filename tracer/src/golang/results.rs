//! Where a Go allocator's result can be read without a probe on its RET instructions.
//!
//! A RET is single-stepped by the kernel (~10 µs a hit), and Go allocators have no shared
//! epilogue: every RET ends its own block (`mov rax,[rsp+K]; add rsp,N; pop rbp; ret`). The
//! kernel emulates nops, direct jumps and calls, every jcc and `push r64` (~1 µs), so for each
//! RET this module looks for the nearest such instruction from which the result is already
//! decided, and says where the result is there.
//!
//! The function is decoded whole into an instruction-level control-flow graph. Its exits are
//! RET, `ud2`/`int3`, and calls to functions that never return (`runtime.throw`, `fatal*`,
//! `panic*`, `gopanic`, `morestack*`: the morestack block jumps back to the entry and is cut
//! there). A function with an indirect jump, a jump out of itself or undecodable bytes is not
//! analysed: all its RETs keep their probes. For a RET `r`, a *site* is an emulated instruction
//! that
//!
//! * dominates `r` (every call that returns through `r` passes it) and is dominated by the entry
//!   probe (so the call is already recorded),
//! * lies in no loop (it fires once per call),
//! * reaches no RET but `r` (every call that passes it returns through `r`, or dies), and
//! * after which the value that `r` returns in RAX is only moved, register ↔ `[rsp+K]`, on every
//!   path to `r` (calls are assumed to keep the caller's frame slots and R14/RBP/RSP, as the Go
//!   ABI does; a register live across a call is lost). When the paths take it from different
//!   places, those places must be proven equal at the site by the moves before it.
//!
//! The nearest site on the dominator chain of `r` is chosen, reading the result from a register
//! proven to hold it rather than its frame slot where there is one. If it is only in a frame
//! slot there, a site further up the chain is taken instead where a register still holds it
//! (before the calls that clobber it): a slot costs the probe a read of user memory, ~75 ns a
//! hit. Calls are passed over as such sites: their emulation writes the return address to the
//! user stack. Other RETs are classified as
//!
//! * a *tail call* into a helper whose own RETs are probed (`call mallocgcTinySlowPath` right
//!   before the epilogue: the helper's sites see the result),
//! * a *size-0 return*: the block reached only through `test rax,rax; je` on the unmodified size
//!   argument, which returns a constant (`&runtime.zerobase`); the entry probe records it,
//! * or kept as a RET probe (the reason is given).
//!
//! With the allocator's argument registers, [`fuse`] then looks for a way to record every call
//! without the entry probe (one breakpoint per allocation instead of two): the entry values of
//! size and type, seeded into the same available-copies analysis, are read by the result's own
//! probe where they still are (a register, the function's argument spill slots, or its only
//! caller's, [`caller_spills`]), or by a probe on an earlier instruction that only that RET's
//! calls pass.

use std::collections::{BTreeSet, HashMap};

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
    OpKind, Register,
};

use tracer_common::golang::MAX_RESULT_OFFSET;

use super::code::format_instr;
use crate::probes::placement::is_emulated;

/// Where a value is when a probe is hit: a result at its site, or an argument (see
/// [`ArgLoc`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultLoc {
    /// A 64-bit general-purpose register.
    Register(Register),
    /// The 8 bytes at `[rsp + offset]` when the probe is hit.
    Stack(u32),
}

impl ResultLoc {
    pub fn describe(&self) -> String {
        match self {
            ResultLoc::Register(r) => format!("{r:?}").to_lowercase(),
            ResultLoc::Stack(k) => format!("[rsp+{k:#x}]"),
        }
    }
}

/// How the result of one RET is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetClass {
    /// Read at an emulated instruction before the RET.
    Site {
        /// Offset from the function's entry.
        offset: u64,
        instruction: String,
        loc: ResultLoc,
    },
    /// The block is `call helper` and the epilogue: the helper's own result probes see it.
    TailCall { helper: String },
    /// Only `size == 0` calls return here, with this constant (link-time address); the entry
    /// probe records them.
    ZeroSize { result: u64 },
    /// Probed on the RET itself (single-stepped); the result is in RAX.
    RetProbe { reason: String },
}

impl RetClass {
    /// The run.json name of the class.
    pub fn name(&self) -> &'static str {
        match self {
            RetClass::Site { .. } => "site",
            RetClass::TailCall { .. } => "tail_call",
            RetClass::ZeroSize { .. } => "size_0_at_entry",
            RetClass::RetProbe { .. } => "ret_probe",
        }
    }
}

/// One RET of a function and how its result is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetPlan {
    /// Offset of the RET from the function's entry.
    pub ret: u64,
    pub class: RetClass,
    /// How the call is recorded without an entry probe; `None` when the function keeps its
    /// entry probe (some RET has no such way).
    pub fused: Option<Fused>,
}

/// Where a probe reads one of the call's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArgLoc {
    /// A register, or a stack slot of an argument spill area, which only its owner writes: the
    /// function's own (above its return address) or its only caller's.
    At(ResultLoc),
    /// Known on every path to the probe: the size of a size-0 return.
    Value(u64),
}

impl ArgLoc {
    pub fn describe(&self) -> String {
        match self {
            ArgLoc::At(place) => place.describe(),
            ArgLoc::Value(v) => format!("{v}"),
        }
    }
}

/// How one RET's call is recorded by a function without an entry probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fused {
    /// The probe that reads the result (at the site, or on the RET for a size-0 return or a
    /// RET probe) also reads the arguments, in the order asked for: one breakpoint a call.
    Together { args: Vec<ArgLoc> },
    /// A probe at `offset`, an emulated instruction that reaches only this RET, reads the
    /// arguments from registers and the result is read as the class says (or by the helper a
    /// tail call goes to): two breakpoints, on a path other calls do not take.
    Apart {
        offset: u64,
        instruction: String,
        args: Vec<Register>,
    },
}

impl Fused {
    /// The run.json name.
    pub fn name(&self) -> &'static str {
        match self {
            Fused::Together { .. } => "with_result",
            Fused::Apart { .. } => "before_result",
        }
    }
}

/// The names of functions called by the code, by target address.
pub(super) type Callee<'a> = &'a dyn Fn(u64) -> Option<String>;

/// Functions that never return to their caller.
fn never_returns(name: &str) -> bool {
    let name = name.strip_suffix(".abi0").unwrap_or(name);
    [
        "runtime.throw",
        "runtime.fatal",
        "runtime.panic",
        "runtime.gopanic",
        "runtime.morestack",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// Registers a Go call leaves intact: the stack and frame pointers and `g` (R14).
const KEPT_ACROSS_CALLS: [Register; 3] = [Register::RSP, Register::RBP, Register::R14];

/// A value's place, with stack slots relative to the stack pointer at the function's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Loc {
    Reg(Register),
    Slot(i64),
    Const(u64),
    /// The value a register held at the function's entry (never written).
    Entry(Register),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Normal,
    Ret,
    /// Never returns (throw, panic, morestack, ud2).
    Dead,
}

/// A call made by the function: target name and whether it is in tail position (only the
/// epilogue follows it, up to a RET that nothing else reaches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CallOut {
    pub target: String,
    pub tail: bool,
}

/// The analysis of one function.
#[derive(Clone, Debug, Default)]
pub(super) struct Analysis {
    pub rets: Vec<RetPlan>,
    /// Calls to the named helpers, for checking that they only ever finish an allocation.
    pub calls: Vec<CallOut>,
    /// Why the function was not analysed (every RET keeps its probe).
    pub gave_up: Option<String>,
}

struct Flow {
    instrs: Vec<Instruction>,
    succ: Vec<Vec<usize>>,
    pred: Vec<Vec<usize>>,
    node: Vec<Node>,
    reachable: Vec<bool>,
    /// Stack-pointer offset from its value at entry, before each instruction.
    rsp: Vec<Option<i64>>,
    idom: Vec<Option<usize>>,
}

fn index_of(instrs: &[Instruction], ip: u64) -> Option<usize> {
    instrs.binary_search_by_key(&ip, Instruction::ip).ok()
}

impl Flow {
    fn build(code: &[u8], entry: u64, callee: Callee<'_>) -> Result<Flow, String> {
        let instrs: Vec<Instruction> = Decoder::with_ip(64, code, entry, DecoderOptions::NONE)
            .into_iter()
            .collect();
        let n = instrs.len();
        let mut succ = vec![Vec::new(); n];
        let mut node = vec![Node::Normal; n];
        let at = |i: &Instruction| format!("+{:#x}", i.ip() - entry);
        for (k, instr) in instrs.iter().enumerate() {
            let next = || {
                (k + 1 < n).then_some(k + 1).ok_or_else(|| {
                    format!(
                        "`{}` at {} falls off the end",
                        format_instr(instr),
                        at(instr)
                    )
                })
            };
            let target = || {
                index_of(&instrs, instr.near_branch_target()).ok_or_else(|| {
                    format!(
                        "`{}` at {} jumps out of the function",
                        format_instr(instr),
                        at(instr)
                    )
                })
            };
            match instr.flow_control() {
                _ if instr.is_invalid() => {
                    return Err(format!("undecodable bytes at {}", at(instr)));
                }
                FlowControl::Next => succ[k] = vec![next()?],
                FlowControl::ConditionalBranch => succ[k] = vec![next()?, target()?],
                FlowControl::UnconditionalBranch => succ[k] = vec![target()?],
                FlowControl::IndirectBranch => {
                    return Err(format!("indirect jump at {}", at(instr)));
                }
                FlowControl::Call => {
                    if callee(instr.near_branch_target()).is_some_and(|name| never_returns(&name)) {
                        node[k] = Node::Dead;
                    } else {
                        succ[k] = vec![next()?];
                    }
                }
                FlowControl::IndirectCall => succ[k] = vec![next()?],
                FlowControl::Return => node[k] = Node::Ret,
                FlowControl::Interrupt | FlowControl::Exception => node[k] = Node::Dead,
                FlowControl::XbeginXabortXend => {
                    return Err(format!("transactional instruction at {}", at(instr)));
                }
            }
        }
        let mut pred = vec![Vec::new(); n];
        for (k, s) in succ.iter().enumerate() {
            for &t in s {
                pred[t].push(k);
            }
        }
        let mut flow = Flow {
            reachable: reach(&succ, 0, n),
            instrs,
            succ,
            pred,
            node,
            rsp: vec![None; n],
            idom: vec![None; n],
        };
        flow.track_rsp(entry)?;
        flow.dominators();
        Ok(flow)
    }

    fn len(&self) -> usize {
        self.instrs.len()
    }

    /// Forward pass: the stack pointer's offset before every reachable instruction.
    fn track_rsp(&mut self, entry: u64) -> Result<(), String> {
        let mut factory = InstructionInfoFactory::new();
        let mut work = vec![0usize];
        self.rsp[0] = Some(0);
        while let Some(k) = work.pop() {
            let before = self.rsp[k].unwrap_or(0);
            let instr = &self.instrs[k];
            let after = rsp_after(&mut factory, instr, before);
            for &s in &self.succ[k] {
                match (self.rsp[s], after) {
                    (None, Some(a)) => {
                        self.rsp[s] = Some(a);
                        work.push(s);
                    }
                    (Some(old), Some(a)) if old == a => {}
                    (_, None) => {
                        return Err(format!(
                            "`{}` at +{:#x} moves the stack pointer by an unknown amount",
                            format_instr(instr),
                            instr.ip() - entry
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "the stack pointer differs between paths at +{:#x}",
                            self.instrs[s].ip() - entry
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Immediate dominators (Cooper, Harvey and Kennedy, "A Simple, Fast Dominance Algorithm").
    fn dominators(&mut self) {
        let n = self.len();
        let mut order = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        // Iterative post-order from the entry.
        let mut stack = vec![(0usize, 0usize)];
        seen[0] = true;
        while let Some(&(k, next)) = stack.last() {
            if let Some(&s) = self.succ[k].get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                if !seen[s] {
                    seen[s] = true;
                    stack.push((s, 0));
                }
            } else {
                order.push(k);
                stack.pop();
            }
        }
        order.reverse();
        let mut rank = vec![usize::MAX; n];
        for (r, &k) in order.iter().enumerate() {
            rank[k] = r;
        }
        let mut idom: Vec<Option<usize>> = vec![None; n];
        idom[0] = Some(0);
        let mut changed = true;
        while changed {
            changed = false;
            for &k in order.iter().skip(1) {
                let mut new: Option<usize> = None;
                for &p in &self.pred[k] {
                    if idom[p].is_none() {
                        continue;
                    }
                    new = Some(match new {
                        None => p,
                        Some(mut a) => {
                            let mut b = p;
                            while a != b {
                                while rank[a] > rank[b] {
                                    a = idom[a].unwrap_or(0);
                                }
                                while rank[b] > rank[a] {
                                    b = idom[b].unwrap_or(0);
                                }
                            }
                            a
                        }
                    });
                }
                if new.is_some() && idom[k] != new {
                    idom[k] = new;
                    changed = true;
                }
            }
        }
        idom[0] = None;
        self.idom = idom;
    }

    fn dominates(&self, a: usize, mut b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.idom[b] {
                Some(up) => b = up,
                None => return false,
            }
        }
    }

    fn in_loop(&self, k: usize) -> bool {
        self.succ[k]
            .iter()
            .any(|&s| reach(&self.succ, s, self.len())[k])
    }

    fn rets_from(&self, k: usize) -> Vec<usize> {
        let r = reach(&self.succ, k, self.len());
        (0..self.len())
            .filter(|&i| r[i] && self.node[i] == Node::Ret)
            .collect()
    }

    /// The unique predecessor of `k`, if it has exactly one.
    fn only_pred(&self, k: usize) -> Option<usize> {
        match self.pred[k].as_slice() {
            [p] => Some(*p),
            _ => None,
        }
    }
}

/// Nodes reachable from `from` (including itself).
fn reach(succ: &[Vec<usize>], from: usize, n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut work = vec![from];
    seen[from] = true;
    while let Some(k) = work.pop() {
        for &s in &succ[k] {
            if !seen[s] {
                seen[s] = true;
                work.push(s);
            }
        }
    }
    seen
}

fn is_rsp_imm(instr: &Instruction) -> bool {
    instr.op0_kind() == OpKind::Register
        && instr.op0_register() == Register::RSP
        && matches!(
            instr.op1_kind(),
            OpKind::Immediate8to64 | OpKind::Immediate32to64
        )
}

/// The stack pointer after `instr`, or `None` when it changes in a way not followed.
fn rsp_after(
    factory: &mut InstructionInfoFactory,
    instr: &Instruction,
    before: i64,
) -> Option<i64> {
    match instr.code() {
        Code::Push_r64 | Code::Pushq_imm8 | Code::Pushq_imm32 => return Some(before - 8),
        Code::Pop_r64 => return Some(before + 8),
        Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32 if is_rsp_imm(instr) => {
            return Some(before - instr.immediate(1) as i64);
        }
        Code::Add_rm64_imm8 | Code::Add_rm64_imm32 if is_rsp_imm(instr) => {
            return Some(before + instr.immediate(1) as i64);
        }
        _ => {}
    }
    if matches!(
        instr.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall | FlowControl::Return
    ) {
        return Some(before);
    }
    let writes_rsp = factory.info(instr).used_registers().iter().any(|u| {
        u.register().full_register() == Register::RSP
            && matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::ReadWrite
                    | OpAccess::CondWrite
                    | OpAccess::ReadCondWrite
            )
    });
    (!writes_rsp).then_some(before)
}

fn is_write(access: OpAccess) -> bool {
    matches!(
        access,
        OpAccess::Write | OpAccess::ReadWrite | OpAccess::CondWrite | OpAccess::ReadCondWrite
    )
}

/// `[rsp+disp]` with no index: the slot's entry-relative offset.
fn rsp_slot(instr: &Instruction, operand: u32, rsp: i64) -> Option<i64> {
    (instr.op_kind(operand) == OpKind::Memory
        && instr.memory_base() == Register::RSP
        && instr.memory_index() == Register::None)
        .then(|| rsp + instr.memory_displacement64() as i64)
}

/// What `instr` does to locations, for moves: `(destination, source)` of a 64-bit move between
/// registers, frame slots and RIP-relative addresses.
fn as_move(instr: &Instruction, rsp: Option<i64>) -> Option<(Loc, Loc)> {
    let reg =
        |op: u32| (instr.op_kind(op) == OpKind::Register).then(|| Loc::Reg(instr.op_register(op)));
    let slot = |op: u32| rsp.and_then(|r| rsp_slot(instr, op, r)).map(Loc::Slot);
    match instr.code() {
        Code::Mov_r64_rm64 | Code::Mov_rm64_r64 => {
            let dst = reg(0).or_else(|| slot(0))?;
            let src = reg(1).or_else(|| slot(1))?;
            Some((dst, src))
        }
        Code::Lea_r64_m if instr.memory_base() == Register::RIP => {
            Some((reg(0)?, Loc::Const(instr.memory_displacement64())))
        }
        Code::Push_r64 => Some((Loc::Slot(rsp? - 8), reg(0)?)),
        Code::Pop_r64 => Some((reg(0)?, Loc::Slot(rsp?))),
        _ => None,
    }
}

/// Whether `instr` (with the stack pointer at `rsp` before it) may change `loc`.
fn writes(
    factory: &mut InstructionInfoFactory,
    instr: &Instruction,
    rsp: Option<i64>,
    loc: Loc,
) -> bool {
    let is_call = matches!(
        instr.flow_control(),
        FlowControl::Call | FlowControl::IndirectCall
    );
    match loc {
        Loc::Const(_) | Loc::Entry(_) => false,
        Loc::Reg(r) => {
            (is_call && !KEPT_ACROSS_CALLS.contains(&r))
                || factory
                    .info(instr)
                    .used_registers()
                    .iter()
                    .any(|u| u.register().full_register() == r && is_write(u.access()))
        }
        Loc::Slot(s) => {
            let Some(rsp) = rsp else {
                return true;
            };
            if matches!(
                instr.code(),
                Code::Push_r64 | Code::Pushq_imm8 | Code::Pushq_imm32
            ) || is_call
            {
                // The pushed word (or return address) goes at rsp-8.
                return overlaps(rsp - 8, 8, s);
            }
            let info = factory.info(instr);
            info.used_memory().iter().any(|m| {
                is_write(m.access())
                    && m.base() == Register::RSP
                    && m.index() == Register::None
                    && overlaps(
                        rsp + m.displacement() as i64,
                        i64::from(m.memory_size().size() as u32).max(1),
                        s,
                    )
            })
        }
    }
}

fn overlaps(start: i64, len: i64, slot: i64) -> bool {
    start < slot + 8 && slot < start + len
}

/// `loc` after `instr` ← where that value was before it; `None` if `instr` computes it.
fn back_through(
    factory: &mut InstructionInfoFactory,
    flow: &Flow,
    k: usize,
    loc: Loc,
) -> Option<Loc> {
    let instr = &flow.instrs[k];
    let rsp = flow.rsp[k];
    if let Some((dst, src)) = as_move(instr, rsp)
        && dst == loc
    {
        return Some(src);
    }
    (!writes(factory, instr, rsp, loc)).then_some(loc)
}

/// The places at `site` (before it executes) from which RAX at `ret` comes, over every path
/// from `site` to `ret`; `None` if on some path it is computed rather than moved.
fn result_sources(flow: &Flow, site: usize, ret: usize) -> Option<BTreeSet<Loc>> {
    let n = flow.len();
    let forward = reach(&flow.succ, site, n);
    let backward = reach(&flow.pred, ret, n);
    let inside: Vec<bool> = (0..n).map(|k| forward[k] && backward[k]).collect();
    let mut need: Vec<BTreeSet<Loc>> = vec![BTreeSet::new(); n];
    need[ret].insert(Loc::Reg(Register::RAX));
    let mut factory = InstructionInfoFactory::new();
    let mut work: Vec<usize> = flow.pred[ret]
        .iter()
        .copied()
        .filter(|&p| inside[p])
        .collect();
    let mut steps = 0usize;
    while let Some(k) = work.pop() {
        steps += 1;
        if steps > 64 * n {
            return None;
        }
        let mut after = BTreeSet::new();
        for &s in &flow.succ[k] {
            if inside[s] {
                after.extend(need[s].iter().copied());
            }
        }
        let mut before = BTreeSet::new();
        for loc in after {
            before.insert(back_through(&mut factory, flow, k, loc)?);
        }
        if before != need[k] {
            need[k] = before;
            if k != site {
                work.extend(flow.pred[k].iter().copied().filter(|&p| inside[p]));
            }
        }
    }
    Some(std::mem::take(&mut need[site]))
}

/// Pairs of places proven to hold the same value before `target`, from the moves on every path
/// from the entry (an available-copies analysis).
fn equal_at(flow: &Flow, target: usize) -> BTreeSet<(Loc, Loc)> {
    equal_at_from(flow, target, BTreeSet::new())
}

/// [`equal_at`], with `seed` holding at the entry.
fn equal_at_from(flow: &Flow, target: usize, seed: BTreeSet<(Loc, Loc)>) -> BTreeSet<(Loc, Loc)> {
    let n = flow.len();
    let mut state: Vec<Option<BTreeSet<(Loc, Loc)>>> = vec![None; n];
    state[0] = Some(seed);
    let mut work = vec![0usize];
    let mut factory = InstructionInfoFactory::new();
    let mut steps = 0usize;
    while let Some(k) = work.pop() {
        steps += 1;
        if steps > 64 * n {
            return BTreeSet::new();
        }
        let Some(before) = state[k].clone() else {
            continue;
        };
        let instr = &flow.instrs[k];
        let rsp = flow.rsp[k];
        let mut after: BTreeSet<(Loc, Loc)> = before
            .iter()
            .copied()
            .filter(|(a, b)| {
                !writes(&mut factory, instr, rsp, *a) && !writes(&mut factory, instr, rsp, *b)
            })
            .collect();
        if let Some((dst, src)) = as_move(instr, rsp)
            && dst != src
        {
            let equals: Vec<Loc> = before
                .iter()
                .filter_map(|&(a, b)| {
                    if a == src {
                        Some(b)
                    } else if b == src {
                        Some(a)
                    } else {
                        None
                    }
                })
                .filter(|&x| x != dst)
                .chain([src])
                .collect();
            // A move into `dst` that reads `dst` itself (`pop` into an overwritten slot) keeps
            // nothing about it; otherwise `dst` now equals `src` and everything `src` equalled.
            if !writes(&mut factory, instr, rsp, src) {
                for x in equals {
                    after.insert(if dst < x { (dst, x) } else { (x, dst) });
                }
            }
        }
        for &s in &flow.succ[k] {
            let merged = match &state[s] {
                None => after.clone(),
                Some(old) => old.intersection(&after).copied().collect(),
            };
            if state[s].as_ref() != Some(&merged) {
                state[s] = Some(merged);
                work.push(s);
            }
        }
    }
    state[target].take().unwrap_or_default()
}

fn to_result_loc(loc: Loc, rsp: Option<i64>) -> Option<ResultLoc> {
    match loc {
        Loc::Reg(r) => Some(ResultLoc::Register(r)),
        Loc::Slot(s) => u32::try_from(s - rsp?).ok().map(ResultLoc::Stack),
        Loc::Const(_) | Loc::Entry(_) => None,
    }
}

/// Where the values the function received in `regs` are before instruction `at`, on every path
/// from the entry: a register holding it, else a slot of the caller's argument spill area (Go
/// spills a register argument there, `size+0(FP)`: [`spill_slot`]); `None` where neither holds
/// it.
fn entry_values_at(flow: &Flow, at: usize, regs: &[Register]) -> Vec<Option<ArgLoc>> {
    entry_values_or_callers(flow, at, regs, &[])
}

/// [`entry_values_at`], falling back for `regs[i]` to the caller's slot at entry
/// `rsp + caller[i]` (see [`caller_spills`]); the caller checks that the function never writes
/// it.
fn entry_values_or_callers(
    flow: &Flow,
    at: usize,
    regs: &[Register],
    caller: &[Option<i64>],
) -> Vec<Option<ArgLoc>> {
    let copies = entry_copies(flow, at, regs);
    let rsp = flow.rsp[at];
    regs.iter()
        .enumerate()
        .map(|(i, &r)| {
            let mut holders = holders_of(&copies, r);
            let place = match holders.find(|l| matches!(l, Loc::Reg(_))) {
                Some(reg) => Some(reg),
                None => spill_slot(&copies, r)
                    .or_else(|| caller.get(i).copied().flatten())
                    .map(Loc::Slot),
            };
            to_result_loc(place?, rsp).map(ArgLoc::At)
        })
        .collect()
}

/// The places proven to hold copies of the values of `regs` at the function's entry, before
/// instruction `at` (pairs with `Loc::Entry`, from [`equal_at_from`]).
fn entry_copies(flow: &Flow, at: usize, regs: &[Register]) -> BTreeSet<(Loc, Loc)> {
    let seed = regs.iter().map(|&r| (Loc::Reg(r), Loc::Entry(r))).collect();
    equal_at_from(flow, at, seed)
}

/// The places that `copies` ([`entry_copies`]) prove to hold register `r`'s entry value.
fn holders_of(copies: &BTreeSet<(Loc, Loc)>, r: Register) -> impl Iterator<Item = Loc> + '_ {
    copies.iter().filter_map(move |&(a, b)| match (a, b) {
        (x, Loc::Entry(e)) | (Loc::Entry(e), x) if e == r => Some(x),
        _ => None,
    })
}

/// The lowest argument spill slot (entry `rsp+8` up: above the return address) holding register
/// `r`'s entry value. Frame slots below the return address are not used: a callee may write the
/// outgoing spill area at the bottom of the frame, and the moves alone cannot tell which slots
/// those are.
fn spill_slot(copies: &BTreeSet<(Loc, Loc)>, r: Register) -> Option<i64> {
    holders_of(copies, r)
        .filter_map(|l| match l {
            Loc::Slot(s) if s >= 8 => Some(s),
            _ => None,
        })
        .min()
}

/// For a function `callee_entry` whose only caller is this one (`code` at `entry`), where the
/// caller keeps the arguments it passes in `regs` across every call to it, as offsets from the
/// callee's entry stack pointer: the caller's own argument spill slots (`size+0(FP)`, written
/// by nobody else), when it passes its own arguments unchanged. An error when a call passes
/// another value, a value is in no spill slot there, or the calls disagree.
pub(super) fn caller_spills(
    code: &[u8],
    entry: u64,
    callee_entry: u64,
    regs: &[Register],
    callee: Callee<'_>,
) -> Result<Vec<i64>, String> {
    let flow = Flow::build(code, entry, callee)?;
    let mut found: Option<Vec<i64>> = None;
    for k in (0..flow.len()).filter(|&k| flow.reachable[k]) {
        let instr = &flow.instrs[k];
        if instr.op0_kind() != OpKind::NearBranch64 || instr.near_branch_target() != callee_entry {
            continue;
        }
        if instr.flow_control() != FlowControl::Call {
            return Err(format!("`{}` jumps to it", format_instr(instr)));
        }
        let rsp = flow.rsp[k].ok_or("unknown stack pointer at a call")?;
        let copies = entry_copies(&flow, k, regs);
        let mut offsets = Vec::new();
        for &r in regs {
            if !holders_of(&copies, r).any(|l| l == Loc::Reg(r)) {
                return Err(format!("{r:?} is not the caller's own argument at a call"));
            }
            let slot = spill_slot(&copies, r)
                .ok_or_else(|| format!("{r:?} is in no spill slot at a call"))?;
            // The callee's entry stack pointer is the caller's at the call less the return
            // address.
            offsets.push(slot - (rsp - 8));
        }
        match &found {
            None => found = Some(offsets),
            Some(prev) if *prev == offsets => {}
            Some(_) => return Err("the calls keep the arguments in different slots".into()),
        }
    }
    found.ok_or_else(|| "no direct call".into())
}

/// Where the probe reads the result at `site` for `ret`, if the result is final there.
enum SiteCheck {
    Read(ResultLoc),
    /// The result is computed after this point: no site further up can see it either.
    Computed,
    /// Taken from several places that could not be proven equal.
    Unproven,
}

fn check_site(flow: &Flow, site: usize, ret: usize) -> SiteCheck {
    let Some(sources) = result_sources(flow, site, ret) else {
        return SiteCheck::Computed;
    };
    let rsp = flow.rsp[site];
    let locs: Vec<Loc> = sources.into_iter().collect();
    let equal = equal_at(flow, site);
    let same = |a: Loc, b: Loc| equal.contains(&if a < b { (a, b) } else { (b, a) });
    let read = match locs.as_slice() {
        [] => return SiteCheck::Computed,
        [only] => *only,
        several => {
            let first = several[0];
            if !several[1..].iter().all(|&x| same(first, x)) {
                return SiteCheck::Unproven;
            }
            *several
                .iter()
                .find(|l| matches!(l, Loc::Reg(_)))
                .unwrap_or(&first)
        }
    };
    // Prefer a register proven to hold the same value: a frame slot costs the probe a read of
    // user memory (~75 ns a hit, docs/benchmarks.md).
    let read = match read {
        Loc::Slot(_) => equal
            .iter()
            .find_map(|&(a, b)| match (a, b) {
                (Loc::Reg(_), slot) if slot == read => Some(a),
                (slot, Loc::Reg(_)) if slot == read => Some(b),
                _ => None,
            })
            .unwrap_or(read),
        _ => read,
    };
    match to_result_loc(read, rsp) {
        Some(loc) => SiteCheck::Read(loc),
        None => SiteCheck::Computed,
    }
}

/// The site for `ret`, walking up its dominators but not above `entry_probe`: the nearest one,
/// unless it reads a frame slot and a site further up (not a call, whose emulation writes the
/// return address to the user stack) has the result in a register.
fn find_site(flow: &Flow, ret: usize, entry_probe: usize, entry: u64) -> Result<RetClass, String> {
    let (at, nearest) = nearest_site(flow, ret, entry_probe, entry)?;
    if !matches!(
        nearest,
        RetClass::Site {
            loc: ResultLoc::Stack(_),
            ..
        }
    ) {
        return Ok(nearest);
    }
    for up in candidate_sites(flow, at, entry_probe) {
        let instr = &flow.instrs[up];
        if instr.flow_control() == FlowControl::Call {
            continue;
        }
        if flow.rets_from(up) != [ret] {
            break;
        }
        match check_site(flow, up, ret) {
            SiteCheck::Read(loc @ ResultLoc::Register(_)) => {
                return Ok(RetClass::Site {
                    offset: instr.ip() - entry,
                    instruction: format_instr(instr),
                    loc,
                });
            }
            SiteCheck::Read(ResultLoc::Stack(_)) | SiteCheck::Unproven => {}
            SiteCheck::Computed => break,
        }
    }
    Ok(nearest)
}

/// The emulated instructions in no loop that strictly dominate `from` and are strictly dominated
/// by `entry_probe`, nearest first: where a site for a RET dominated by `from` may go.
fn candidate_sites(flow: &Flow, from: usize, entry_probe: usize) -> impl Iterator<Item = usize> {
    std::iter::successors(flow.idom[from], |&at| flow.idom[at])
        .take_while(move |&at| at != entry_probe && flow.dominates(entry_probe, at))
        .filter(|&at| is_emulated(&flow.instrs[at]) && !flow.in_loop(at))
}

/// The nearest site for `ret` (its instruction index and class), walking up its dominators but
/// not above `entry_probe`.
fn nearest_site(
    flow: &Flow,
    ret: usize,
    entry_probe: usize,
    entry: u64,
) -> Result<(usize, RetClass), String> {
    let mut unproven = None;
    for at in candidate_sites(flow, ret, entry_probe) {
        let instr = &flow.instrs[at];
        let rets = flow.rets_from(at);
        if rets != [ret] {
            return Err(match unproven {
                Some(why) => why,
                None => format!(
                    "no emulated instruction reaches only this RET after its result is decided \
                     (+{:#x} `{}` reaches {} RETs)",
                    instr.ip() - entry,
                    format_instr(instr),
                    rets.len()
                ),
            });
        }
        match check_site(flow, at, ret) {
            SiteCheck::Read(loc) => {
                let site = RetClass::Site {
                    offset: instr.ip() - entry,
                    instruction: format_instr(instr),
                    loc,
                };
                return Ok((at, site));
            }
            SiteCheck::Computed => {
                return Err(format!(
                    "the result is computed after the last emulated instruction that reaches only \
                     this RET (+{:#x})",
                    instr.ip() - entry
                ));
            }
            SiteCheck::Unproven => {
                unproven.get_or_insert_with(|| {
                    format!(
                        "at +{:#x} the result comes from places not proven equal",
                        instr.ip() - entry
                    )
                });
            }
        }
    }
    Err(unproven
        .unwrap_or_else(|| "no emulated instruction dominates it after the entry probe".into()))
}

/// `call helper` followed only by the epilogue (nothing writes RAX, one way in) up to `ret`.
fn tail_call(flow: &Flow, ret: usize, callee: Callee<'_>) -> Option<(usize, String)> {
    let mut factory = InstructionInfoFactory::new();
    let mut at = ret;
    loop {
        let p = flow.only_pred(at)?;
        let instr = &flow.instrs[p];
        if instr.flow_control() == FlowControl::Call {
            if instr.next_ip() != flow.instrs[at].ip() {
                return None;
            }
            return callee(instr.near_branch_target()).map(|name| (p, name));
        }
        if instr.flow_control() != FlowControl::Next
            || writes(&mut factory, instr, flow.rsp[p], Loc::Reg(Register::RAX))
        {
            return None;
        }
        at = p;
    }
}

/// A RET reached only when the size argument (RAX at entry) is 0, returning a constant.
fn zero_size(flow: &Flow, ret: usize, entry_probe: usize) -> Option<u64> {
    let mut factory = InstructionInfoFactory::new();
    // Back from the RET through its block to the `je` that is its only way in.
    let mut result = None;
    let mut at = ret;
    let je = loop {
        let p = flow.only_pred(at)?;
        let instr = &flow.instrs[p];
        if instr.flow_control() == FlowControl::ConditionalBranch {
            let taken = index_of(&flow.instrs, instr.near_branch_target()) == Some(at);
            let is_je = matches!(instr.code(), Code::Je_rel8_64 | Code::Je_rel32_64);
            // Not also the fall-through (a jcc to the next instruction).
            if !(taken && is_je && instr.next_ip() != flow.instrs[at].ip()) {
                return None;
            }
            break p;
        }
        if instr.flow_control() != FlowControl::Next {
            return None;
        }
        match as_move(instr, flow.rsp[p]) {
            Some((Loc::Reg(Register::RAX), Loc::Const(c))) if result.is_none() => {
                result = Some(c);
            }
            _ if writes(&mut factory, instr, flow.rsp[p], Loc::Reg(Register::RAX)) => return None,
            _ => {}
        }
        at = p;
    };
    let result = result?;
    let test = flow.only_pred(je)?;
    let t = &flow.instrs[test];
    let tests_rax = t.code() == Code::Test_rm64_r64
        && t.op0_kind() == OpKind::Register
        && t.op0_register() == Register::RAX
        && t.op1_register() == Register::RAX;
    if !tests_rax || !flow.dominates(entry_probe, test) || entry_probe == test {
        return None;
    }
    // Every call that returns passes the test, and RAX is the size argument there: nothing on
    // any path from the entry to it writes RAX.
    let n = flow.len();
    for other in (0..n).filter(|&k| flow.reachable[k] && flow.node[k] == Node::Ret) {
        if !flow.dominates(test, other) {
            return None;
        }
    }
    let to_test = reach(&flow.pred, test, n);
    let from_entry = reach(&flow.succ, 0, n);
    for k in (0..n).filter(|&k| k != test && to_test[k] && from_entry[k]) {
        if writes(
            &mut factory,
            &flow.instrs[k],
            flow.rsp[k],
            Loc::Reg(Register::RAX),
        ) {
            return None;
        }
    }
    Some(result)
}

/// How the calls that return through `ret` (of class `class`; `tail` is the call of a tail
/// call) are recorded by a function without an entry probe, with the arguments `args` (size
/// first) read where they are:
///
/// * at the result's own probe when the arguments are still there (a site, or the RET of a
///   RET probe) or known (size 0 for a size-0 return): [`Fused::Together`];
/// * else at the nearest emulated instruction above it that lies in no loop, reaches only this
///   RET, comes after the stack check and has them in registers: [`Fused::Apart`]. For a tail
///   call that may be the call itself; the helper's sites read the result.
#[allow(clippy::too_many_arguments)]
fn fuse(
    flow: &Flow,
    ret: usize,
    class: &RetClass,
    tail: Option<usize>,
    entry_probe: usize,
    entry: u64,
    args: &[Register],
    caller: &[Option<i64>],
) -> Option<Fused> {
    if !flow.reachable[ret] {
        return None;
    }
    let together = |at: usize| {
        let places: Option<Vec<ArgLoc>> = entry_values_or_callers(flow, at, args, caller)
            .into_iter()
            .collect();
        places.map(|args| Fused::Together { args })
    };
    let apart = |start: Option<usize>| {
        std::iter::successors(start, |&at| flow.idom[at])
            .take_while(|&at| at != entry_probe && flow.dominates(entry_probe, at))
            .filter(|&at| is_emulated(&flow.instrs[at]) && !flow.in_loop(at))
            .take_while(|&at| flow.rets_from(at) == [ret])
            .find_map(|at| {
                let regs: Option<Vec<Register>> = entry_values_at(flow, at, args)
                    .into_iter()
                    .map(|place| match place {
                        Some(ArgLoc::At(ResultLoc::Register(r))) => Some(r),
                        _ => None,
                    })
                    .collect();
                let instr = &flow.instrs[at];
                regs.map(|args| Fused::Apart {
                    offset: instr.ip() - entry,
                    instruction: format_instr(instr),
                    args,
                })
            })
    };
    match class {
        // A slot too far for the cookie: the tracer reads the result on the RET instead.
        RetClass::Site {
            loc: ResultLoc::Stack(k),
            ..
        } if *k > MAX_RESULT_OFFSET => together(ret).or_else(|| apart(flow.idom[ret])),
        RetClass::Site { offset, .. } => {
            let site = index_of(&flow.instrs, entry + offset)?;
            together(site).or_else(|| apart(flow.idom[site]))
        }
        RetClass::ZeroSize { .. } => {
            let (_, rest) = args.split_first()?;
            let rest: Option<Vec<ArgLoc>> = entry_values_at(flow, ret, rest).into_iter().collect();
            let mut places = vec![ArgLoc::Value(0)];
            places.extend(rest?);
            Some(Fused::Together { args: places })
        }
        RetClass::RetProbe { .. } => together(ret).or_else(|| apart(flow.idom[ret])),
        RetClass::TailCall { .. } => apart(Some(tail?)),
    }
}

/// Whether any reachable instruction of the function may write `loc`.
fn writes_anywhere(flow: &Flow, loc: Loc) -> bool {
    let mut factory = InstructionInfoFactory::new();
    (0..flow.len())
        .filter(|&k| flow.reachable[k])
        .any(|k| writes(&mut factory, &flow.instrs[k], flow.rsp[k], loc))
}

/// Classifies every RET of the function `code` at `entry`. `entry_probe` is the entry probe's
/// offset; `helpers` are the functions whose results are probed on their own (a tail call into
/// one of them needs no probe).
///
/// `args` are the registers of the arguments an allocation row records, size first; with them,
/// every RET also gets the [`Fused`] way to record its calls when there is one for all of them
/// (see [`fuse`]). `caller_slots`, when not empty, are where the only caller keeps each of them
/// across the call ([`caller_spills`]), for where the function itself no longer has them.
pub(super) fn analyse(
    code: &[u8],
    entry: u64,
    entry_probe: u64,
    helpers: &[String],
    args: Option<&[Register]>,
    caller_slots: &[i64],
    callee: Callee<'_>,
) -> Analysis {
    let all_rets = || {
        let rets: Vec<u64> = Decoder::with_ip(64, code, entry, DecoderOptions::NONE)
            .into_iter()
            .filter(|i| i.flow_control() == FlowControl::Return)
            .map(|i| i.ip() - entry)
            .collect();
        rets
    };
    let give_up = |why: String| Analysis {
        rets: all_rets()
            .into_iter()
            .map(|ret| RetPlan {
                ret,
                class: RetClass::RetProbe {
                    reason: format!("function not analysed: {why}"),
                },
                fused: None,
            })
            .collect(),
        calls: Vec::new(),
        gave_up: Some(why),
    };
    let flow = match Flow::build(code, entry, callee) {
        Ok(flow) => flow,
        Err(why) => return give_up(why),
    };
    let Some(probe) = index_of(&flow.instrs, entry + entry_probe) else {
        return give_up(format!(
            "the entry probe +{entry_probe:#x} is not an instruction"
        ));
    };
    let is_helper = |name: &str| helpers.iter().any(|h| h == name);
    let caller: Vec<Option<i64>> = caller_slots
        .iter()
        .map(|&slot| (!writes_anywhere(&flow, Loc::Slot(slot))).then_some(slot))
        .collect();
    let mut analysis = Analysis::default();
    let mut tail_calls = Vec::new();
    for k in (0..flow.len()).filter(|&k| flow.node[k] == Node::Ret) {
        let ret = flow.instrs[k].ip() - entry;
        let class = if !flow.reachable[k] {
            // Only after a call that never returns: probed anyway, as nothing can prove the
            // callee's name right, and a probe that never fires costs nothing.
            RetClass::RetProbe {
                reason: "not reached from the entry (follows a call that never returns)".into(),
            }
        } else if let Some(result) = zero_size(&flow, k, probe) {
            RetClass::ZeroSize { result }
        } else if let Some((call, helper)) =
            tail_call(&flow, k, callee).filter(|(_, h)| is_helper(h))
        {
            tail_calls.push(call);
            RetClass::TailCall { helper }
        } else {
            match find_site(&flow, k, probe, entry) {
                Ok(site) => site,
                Err(reason) => RetClass::RetProbe { reason },
            }
        };
        let fused = args.and_then(|args| {
            let tail = tail_call(&flow, k, callee).map(|(call, _)| call);
            fuse(&flow, k, &class, tail, probe, entry, args, &caller)
        });
        analysis.rets.push(RetPlan { ret, class, fused });
    }
    // Without an entry probe every call must be recorded on its way out: all RETs or none.
    if analysis.rets.iter().any(|r| r.fused.is_none()) {
        for r in &mut analysis.rets {
            r.fused = None;
        }
    }
    // Which helpers the function calls, and whether only in tail position.
    for k in (0..flow.len())
        .filter(|&k| flow.reachable[k] && flow.instrs[k].flow_control() == FlowControl::Call)
    {
        if let Some(target) = callee(flow.instrs[k].near_branch_target())
            && is_helper(&target)
        {
            analysis.calls.push(CallOut {
                target,
                tail: tail_calls.contains(&k),
            });
        }
    }
    analysis
}

/// Every helper called by these analyses only in tail position.
pub(super) fn tail_only_helpers<'a>(
    analyses: impl IntoIterator<Item = &'a Analysis>,
) -> Vec<String> {
    let mut tail: HashMap<String, bool> = HashMap::new();
    for a in analyses {
        for call in &a.calls {
            *tail.entry(call.target.clone()).or_insert(true) &= call.tail;
        }
    }
    let mut out: Vec<String> = tail
        .into_iter()
        .filter(|(_, t)| *t)
        .map(|(n, _)| n)
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: u64) -> Option<String> {
        None
    }

    fn classes(code: &[u8], probe: u64) -> Vec<(u64, RetClass)> {
        analyse(code, 0x1000, probe, &[], None, &[], &none)
            .rets
            .into_iter()
            .map(|r| (r.ret, r.class))
            .collect()
    }

    /// Check the Go 1.19 tiny-path shape: the result is final in RAX before a `jne` whose both
    /// ways lead only to this RET, so the `jne` is the site and RAX is read there.
    #[test]
    fn site_reads_rax() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x85, 0xc0, // +1 test rax,rax
            0x74, 0x0a, // +4 je +0x10
            0x48, 0x8d, 0x04, 0x19, // +6 lea rax,[rcx+rbx]
            0x85, 0xc9, // +a test ecx,ecx
            0x75, 0x01, // +c jne +0xf
            0x90, // +e nop
            0xc3, // +f ret
            0x31, 0xc0, // +10 xor eax,eax
            0xc3, // +12 ret
        ];
        let got = classes(&code, 0);
        assert_eq!(got.len(), 2);
        // The nop at +0xe does not dominate the RET (the jne skips it).
        assert!(
            matches!(
                got[0],
                (
                    0xf,
                    RetClass::Site {
                        offset: 0xc,
                        loc: ResultLoc::Register(Register::RAX),
                        ..
                    }
                )
            ),
            "{got:?}"
        );
        // The second RET's result is computed (xor) after the last instruction reaching only it.
        assert!(matches!(got[1].1, RetClass::RetProbe { .. }), "{got:?}");
    }

    /// Check the main-path shape: the result is in a frame slot, reloaded after calls and
    /// across `sub`/`add rsp`; the probe reads `[rsp+K]` relative to the site's stack pointer
    /// (RAX, stored there, is overwritten before the site).
    #[test]
    fn site_reads_frame_slot() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x83, 0xec, 0x20, // +1 sub rsp,0x20
            0x48, 0x89, 0x44, 0x24, 0x10, // +5 mov [rsp+0x10],rax
            0x48, 0x98, // +a cdqe (writes RAX)
            0x74, 0x05, // +c je +0x13
            0xe8, 0x00, 0x00, 0x00, 0x00, // +e call +0x13 (clobbers registers)
            0x48, 0x8b, 0x44, 0x24, 0x10, // +13 mov rax,[rsp+0x10]
            0x48, 0x83, 0xc4, 0x20, // +18 add rsp,0x20
            0xc3, // +1c ret
        ];
        let got = classes(&code, 0);
        assert!(
            matches!(
                got.as_slice(),
                [(
                    0x1c,
                    RetClass::Site {
                        offset: 0xc,
                        loc: ResultLoc::Stack(0x10),
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
    }

    /// Check the preference for a register: the nearest site (+0x15) has the result only in its
    /// frame slot (a call on one way to it clobbers RAX), the `je` above it (+0xc) also in RAX,
    /// which was stored there; the probe goes on the `je` and reads RAX.
    #[test]
    fn site_prefers_a_register_further_up() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x83, 0xec, 0x20, // +1 sub rsp,0x20
            0x48, 0x89, 0x44, 0x24, 0x10, // +5 mov [rsp+0x10],rax
            0x85, 0xdb, // +a test ebx,ebx
            0x74, 0x05, // +c je +0x13
            0xe8, 0x00, 0x00, 0x00, 0x00, // +e call +0x13 (clobbers registers)
            0x85, 0xc9, // +13 test ecx,ecx
            0x75, 0x00, // +15 jne +0x17
            0x48, 0x8b, 0x44, 0x24, 0x10, // +17 mov rax,[rsp+0x10]
            0x48, 0x83, 0xc4, 0x20, // +1c add rsp,0x20
            0xc3, // +20 ret
        ];
        let got = classes(&code, 0);
        assert!(
            matches!(
                got.as_slice(),
                [(
                    0x20,
                    RetClass::Site {
                        offset: 0xc,
                        loc: ResultLoc::Register(Register::RAX),
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
        // With RAX overwritten before the `je`, the nearest site and the slot stay.
        let mut overwritten = code;
        overwritten[0xa..0xc].copy_from_slice(&[0x48, 0x98]); // cdqe
        let got = classes(&overwritten, 0);
        assert!(
            matches!(
                got.as_slice(),
                [(
                    0x20,
                    RetClass::Site {
                        offset: 0x15,
                        loc: ResultLoc::Stack(0x10),
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
    }

    /// Check that an instruction in a loop is never a site, and that a RET whose result comes
    /// from a call has none.
    #[test]
    fn loops_and_calls() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0xff, 0xc9, // +1 dec rcx
            0x75, 0xfb, // +4 jne +1 (loop)
            0xe8, 0x00, 0x00, 0x00, 0x00, // +6 call +0xb
            0xc3, // +b ret
        ];
        let got = classes(&code, 0);
        assert!(
            matches!(&got[0].1, RetClass::RetProbe { reason } if reason.contains("computed")),
            "{got:?}"
        );
    }

    /// Check that two places for the result must be proven equal at the site: with the
    /// `mov [rsp+8],rax` before the jcc they are, without it the RET keeps its probe.
    #[test]
    fn equal_places_are_proven() {
        let with = [
            0x90, // +0 nop
            0x48, 0x89, 0x44, 0x24, 0x08, // +1 mov [rsp+8],rax
            0x85, 0xdb, // +6 test ebx,ebx
            0x74, 0x05, // +8 je +0xf
            0x48, 0x8b, 0x44, 0x24, 0x08, // +a mov rax,[rsp+8]
            0xc3, // +f ret
        ];
        let got = classes(&with, 0);
        assert!(
            matches!(got[0].1, RetClass::Site { offset: 8, .. }),
            "{got:?}"
        );
        let mut without = with;
        without[1..6].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00]); // 5-byte nop
        let got = classes(&without, 0);
        assert!(matches!(got[0].1, RetClass::RetProbe { .. }), "{got:?}");
    }

    /// Check the size-0 shape of Go 1.19's mallocgc: `test rax,rax; je` to a block that loads a
    /// constant and returns; the entry probe must come before the test.
    #[test]
    fn size_zero_return() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x85, 0xc0, // +1 test rax,rax
            0x74, 0x03, // +4 je +9
            0x90, // +6 nop
            0x31, 0xc0, // +7 xor eax,eax
            0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00, // +9 lea rax,[rip+0x10]
            0xc3, // +10 ret
        ];
        // The fall-through also reaches the zero block here, so it is not a size-0 return.
        let got = classes(&code, 0);
        assert!(matches!(got[0].1, RetClass::RetProbe { .. }), "{got:?}");
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x85, 0xc0, // +1 test rax,rax
            0x74, 0x04, // +4 je +0xa
            0x90, // +6 nop
            0x31, 0xc0, // +7 xor eax,eax
            0xc3, // +9 ret
            0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00, // +a lea rax,[rip+0x10]
            0xc3, // +11 ret
        ];
        let got = classes(&code, 0);
        assert_eq!(
            got[1],
            (
                0x11,
                RetClass::ZeroSize {
                    result: 0x1000 + 0x11 + 0x10
                }
            )
        );
        // An entry probe after the test would miss size-0 calls.
        let got = classes(&code, 6);
        assert!(matches!(got[1].1, RetClass::RetProbe { .. }), "{got:?}");
    }

    fn stack(offset: u32) -> ArgLoc {
        ArgLoc::At(ResultLoc::Stack(offset))
    }

    fn fused(code: &[u8], probe: u64) -> Vec<Option<Fused>> {
        fused_with_caller(code, probe, &[])
    }

    fn fused_with_caller(code: &[u8], probe: u64, caller: &[i64]) -> Vec<Option<Fused>> {
        let args = [Register::RAX, Register::RBX];
        analyse(code, 0x1000, probe, &[], Some(&args), caller, &none)
            .rets
            .into_iter()
            .map(|r| r.fused)
            .collect()
    }

    /// Check that a site reads the arguments from the caller's spill slots (`size+0(FP)` at
    /// entry `rsp+8`) after the calls that clobber their registers, relative to the site's
    /// stack pointer; and that a frame slot below the return address is not used, so the
    /// function keeps its entry probe.
    #[test]
    fn fused_site_reads_spill_slots() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x83, 0xec, 0x20, // +1 sub rsp,0x20
            0x48, 0x89, 0x44, 0x24, 0x28, // +5 mov [rsp+0x28],rax (entry rsp+8)
            0x48, 0x89, 0x5c, 0x24, 0x30, // +a mov [rsp+0x30],rbx (entry rsp+0x10)
            0xe8, 0x00, 0x00, 0x00, 0x00, // +f call +0x14 (clobbers registers)
            0x85, 0xc0, // +14 test eax,eax
            0x75, 0x00, // +16 jne +0x18 (the site: the result is RAX)
            0x48, 0x83, 0xc4, 0x20, // +18 add rsp,0x20
            0xc3, // +1c ret
        ];
        let got = fused(&code, 0);
        assert_eq!(
            got,
            [Some(Fused::Together {
                args: vec![stack(0x28), stack(0x30)]
            })]
        );
        // Spilled into the frame instead (`[rsp+0x8]`, entry rsp-0x18): not trusted, so the
        // arguments are read apart, at the call, the last place their registers hold them.
        let mut below = code;
        below[9] = 0x08;
        assert_eq!(
            fused(&below, 0),
            [Some(Fused::Apart {
                offset: 0xf,
                instruction: "call 1014h".into(),
                args: vec![Register::RAX, Register::RBX]
            })]
        );
        // With the call before the entry probe's dominance (probe at the site), nothing: the
        // function keeps its entry probe.
        assert_eq!(fused(&below, 0x16), [None]);
    }

    /// Check the caller's spill slots: found at its call when it passes its own arguments
    /// (reloaded from `size+0(FP)` after a call), as offsets from the callee's entry stack
    /// pointer; used by the callee's site where its own registers are lost, unless it writes
    /// there.
    #[test]
    fn fused_from_the_callers_spill_slots() {
        let dispatcher = [
            0x48, 0x83, 0xec, 0x18, // +0 sub rsp,0x18
            0x48, 0x89, 0x44, 0x24, 0x20, // +4 mov [rsp+0x20],rax (entry rsp+8)
            0x48, 0x89, 0x5c, 0x24, 0x28, // +9 mov [rsp+0x28],rbx (entry rsp+0x10)
            0xe8, 0x00, 0x00, 0x00, 0x00, // +e call +0x13 (clobbers RAX, RBX)
            0x48, 0x8b, 0x44, 0x24, 0x20, // +13 mov rax,[rsp+0x20]
            0x48, 0x8b, 0x5c, 0x24, 0x28, // +18 mov rbx,[rsp+0x28]
            0xe8, 0x0b, 0x00, 0x00, 0x00, // +1d call +0x2d (the leaf)
            0x48, 0x83, 0xc4, 0x18, // +22 add rsp,0x18
            0xc3, // +26 ret
        ];
        let got = caller_spills(
            &dispatcher,
            0x1000,
            0x102d,
            &[Register::RAX, Register::RBX],
            &none,
        );
        // The leaf's entry rsp is the dispatcher's entry rsp less its frame (0x18) and the
        // leaf's return address: `size+0(FP)` (dispatcher entry rsp+8) is leaf entry rsp+0x28.
        assert_eq!(got, Ok(vec![0x28, 0x30]));
        // Passing a computed size: refused.
        let mut computed = dispatcher;
        computed[0x13..0x18].copy_from_slice(&[0x48, 0x83, 0xc0, 0x08, 0x90]); // add rax,8; nop
        assert!(
            caller_spills(
                &computed,
                0x1000,
                0x102d,
                &[Register::RAX, Register::RBX],
                &none
            )
            .is_err()
        );

        let leaf = [
            0x90, // +0 nop (entry probe)
            0x31, 0xdb, // +1 xor ebx,ebx (type lost)
            0x48, 0x8d, 0x04, 0x0a, // +3 lea rax,[rdx+rcx] (the result; size lost)
            0x85, 0xd2, // +7 test edx,edx
            0x75, 0x00, // +9 jne +0xb (the site)
            0xc3, // +b ret
        ];
        assert_eq!(
            fused_with_caller(&leaf, 0, &[0x28, 0x30]),
            [Some(Fused::Together {
                args: vec![stack(0x28), stack(0x30)]
            })]
        );
        // A leaf that writes one of those slots does not read it there.
        let mut writing = [0x90; 0x10];
        writing[..5].copy_from_slice(&[0x48, 0x89, 0x4c, 0x24, 0x30]); // mov [rsp+0x30],rcx
        writing[5..].copy_from_slice(&leaf[1..]);
        assert_eq!(fused_with_caller(&writing, 0, &[0x28, 0x30]), [None]);
    }

    /// Check that a result too far up the frame for the probe's cookie, read on the RET
    /// instead, has its arguments placed relative to the RET's stack pointer, not the site's.
    #[test]
    fn fused_result_read_on_the_ret() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x81, 0xec, 0x00, 0x00, 0x50, 0x00, // +1 sub rsp,0x500000
            0x48, 0x89, 0x84, 0x24, 0x08, 0x00, 0x50, 0x00, // +8 mov [rsp+0x500008],rax
            0x48, 0x89, 0x9c, 0x24, 0x10, 0x00, 0x50, 0x00, // +10 mov [rsp+0x500010],rbx
            0x48, 0x89, 0x94, 0x24, 0xf8, 0xff, 0x4f, 0x00, // +18 mov [rsp+0x4ffff8],rdx
            0xe8, 0x00, 0x00, 0x00, 0x00, // +20 call +0x25
            0x85, 0xc9, // +25 test ecx,ecx
            0x75, 0x00, // +27 jne +0x29 (the site: the result in [rsp+0x4ffff8])
            0x48, 0x8b, 0x84, 0x24, 0xf8, 0xff, 0x4f, 0x00, // +29 mov rax,[rsp+0x4ffff8]
            0x48, 0x81, 0xc4, 0x00, 0x00, 0x50, 0x00, // +31 add rsp,0x500000
            0xc3, // +38 ret
        ];
        let got = classes(&code, 0);
        assert!(
            matches!(
                got[0].1,
                RetClass::Site {
                    offset: 0x27,
                    loc: ResultLoc::Stack(0x4f_fff8),
                    ..
                }
            ),
            "{got:?}"
        );
        assert_eq!(
            fused(&code, 0),
            [Some(Fused::Together {
                args: vec![stack(8), stack(0x10)]
            })]
        );
    }

    /// Check an argument probe apart from the result's: RAX and RBX are lost before the only
    /// site, but an earlier jcc reaching only this RET still has them.
    #[test]
    fn fused_apart_from_the_site() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x85, 0xc9, // +1 test ecx,ecx
            0x74, 0x00, // +3 je +5 (reaches only the RET, size and type in RAX, RBX)
            0x31, 0xdb, // +5 xor ebx,ebx (type lost)
            0x48, 0x8d, 0x04, 0x0a, // +7 lea rax,[rdx+rcx] (the result)
            0x85, 0xd2, // +b test edx,edx
            0x75, 0x00, // +d jne +0xf (the site)
            0xc3, // +f ret
        ];
        assert_eq!(
            fused(&code, 0),
            [Some(Fused::Apart {
                offset: 3,
                instruction: "je 1005h".into(),
                args: vec![Register::RAX, Register::RBX]
            })]
        );
    }

    /// Check the size-0 return without an entry probe: probed on its RET, size 0 and the type
    /// still in RBX.
    #[test]
    fn fused_size_zero_return() {
        let code = [
            0x90, // +0 nop (entry probe)
            0x48, 0x85, 0xc0, // +1 test rax,rax
            0x74, 0x06, // +4 je +0xc
            0x48, 0x89, 0xc1, // +6 mov rcx,rax
            0x75, 0x00, // +9 jne +0xb (site of the other RET: size in RAX, RCX)
            0xc3, // +b ret
            0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00, // +c lea rax,[rip+0x10]
            0xc3, // +13 ret
        ];
        let got = fused(&code, 0);
        assert_eq!(
            got[1],
            Some(Fused::Together {
                args: vec![
                    ArgLoc::Value(0),
                    ArgLoc::At(ResultLoc::Register(Register::RBX))
                ]
            })
        );
        assert!(
            matches!(&got[0], Some(Fused::Together { args }) if args[1] == ArgLoc::At(ResultLoc::Register(Register::RBX))),
            "{got:?}"
        );
    }

    /// Check that an indirect jump makes the function unanalysed, every RET probed.
    #[test]
    fn indirect_jump_gives_up() {
        let code = [0x90, 0xff, 0xe0, 0xc3]; // nop; jmp rax; ret
        let a = analyse(&code, 0x1000, 0, &[], None, &[], &none);
        assert!(a.gave_up.unwrap().contains("indirect jump"));
        assert_eq!(a.rets.len(), 1);
    }
}
