//! Machine code of Go functions: RET instructions and where an entry probe fires once per call.
//!
//! A Go function (ABIInternal, amd64, Go ≥ 1.17: `g` lives in R14) that may grow its stack
//! starts with a stack-bound check against `g.stackguard0` (`g` field at +0x10, after
//! `stack{lo,hi}`; `runtime/runtime2.go` `type g`), emitted by `cmd/internal/obj/x86/obj6.go`
//! `stacksplit`:
//!
//! ```text
//! cmp  rsp, [r14+0x10]              ; small frames
//! jbe  morestack
//! ```
//! ```text
//! lea  r12, [rsp-N]                 ; frames over StackSmall
//! cmp  r12, [r14+0x10]
//! jbe  morestack
//! ```
//! ```text
//! mov  r12, rsp; sub r12, N; jb morestack   ; frames over StackBig
//! cmp  r12, [r14+0x10]
//! jbe  morestack
//! ```
//!
//! `//go:systemstack` functions compare against `g.stackguard1` (`[r14+0x18]`) instead, which
//! sends them to `morestack` (and a throw) when not on the system stack (obj6.go lines
//! 986-1064, `if cursym.CFunc()`). The `morestack` block at the end of the function calls `runtime.morestack_noctxt` and then
//! jumps back to the function's first instruction, so a probe placed on or before the `jbe`
//! fires twice for a call that grows the stack. The probe goes on the first instruction after
//! the check that the kernel emulates ([`is_emulated`]), before any register the probe reads is
//! written, and not on a branch target (it would fire again for every jump there).

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpKind,
    Register,
};

use super::ProbeSpot;
use crate::probes::placement::{is_emulated, writes_any};

/// How many instructions at the start may precede the stack-bound check.
const CHECK_WINDOW: usize = 8;
/// How far after the check the search for an emulated instruction goes.
const SEARCH_BYTES: u64 = 96;
/// `offsetof(g, stackguard0)` and `offsetof(g, stackguard1)` on 64-bit.
const STACKGUARDS: [u64; 2] = [0x10, 0x18];

fn decode(code: &[u8], entry: u64) -> Vec<Instruction> {
    Decoder::with_ip(64, code, entry, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

/// Offsets (from `entry`) of every `ret` in `code`.
pub(super) fn ret_offsets(code: &[u8], entry: u64) -> Vec<u64> {
    decode(code, entry)
        .iter()
        .filter(|i| matches!(i.code(), Code::Retnq | Code::Retnq_imm16))
        .map(|i| i.ip() - entry)
        .collect()
}

/// `cmp reg, [r14+0x10]` or `cmp reg, [r14+0x18]`.
fn is_stackguard_cmp(instr: &Instruction) -> bool {
    matches!(instr.code(), Code::Cmp_r64_rm64)
        && instr.op1_kind() == OpKind::Memory
        && instr.memory_base() == Register::R14
        && instr.memory_index() == Register::None
        && STACKGUARDS.contains(&instr.memory_displacement64())
}

/// Index of the first instruction after the stack-bound check's conditional jump.
fn after_stack_check(instrs: &[Instruction]) -> Option<usize> {
    for (i, instr) in instrs.iter().enumerate().take(CHECK_WINDOW) {
        if is_stackguard_cmp(instr) {
            let jcc = instrs.get(i + 1)?;
            return (jcc.flow_control() == FlowControl::ConditionalBranch).then_some(i + 2);
        }
        if !matches!(
            instr.flow_control(),
            FlowControl::Next | FlowControl::ConditionalBranch
        ) {
            return None;
        }
    }
    None
}

pub(super) fn format_instr(instr: &Instruction) -> String {
    let mut formatter = iced_x86::FastFormatter::new();
    let mut out = String::new();
    formatter.format(instr, &mut out);
    out
}

/// Chooses the entry-probe spot in the function `code` starting at `entry`.
pub(super) fn entry_probe(
    code: &[u8],
    entry: u64,
    needs: &[Register],
) -> Result<ProbeSpot, String> {
    let instrs = decode(code, entry);
    let first = instrs.first().ok_or("no code")?;
    if first.is_invalid() {
        return Err(format!("undecodable first instruction at {entry:#x}"));
    }
    let end = entry + code.len() as u64;
    let targets: Vec<u64> = instrs
        .iter()
        .filter(|i| {
            matches!(
                i.flow_control(),
                FlowControl::ConditionalBranch
                    | FlowControl::UnconditionalBranch
                    | FlowControl::Call
            )
        })
        .map(Instruction::near_branch_target)
        .filter(|&t| t > entry && t < end)
        .collect();
    let start_index = after_stack_check(&instrs);
    let mut factory = InstructionInfoFactory::new();
    // Registers written by the stack check itself (only r12) are no concern, but a check that
    // wrote a needed register would make every later spot wrong.
    if let Some(start) = start_index {
        for instr in &instrs[..start] {
            if let Some(reg) = writes_any(&mut factory, instr, needs) {
                return Err(format!(
                    "the stack check `{}` overwrites {reg:?}",
                    format_instr(instr)
                ));
            }
        }
    }
    let from = start_index.unwrap_or(0);
    let base = instrs
        .get(from)
        .ok_or("function ends after its stack check")?;
    let stack_check_end = start_index.map(|_| base.ip() - entry);
    let mut reason = format!("no emulated instruction within {SEARCH_BYTES} bytes");
    for instr in &instrs[from..] {
        if instr.ip() - base.ip() > SEARCH_BYTES {
            break;
        }
        if instr.is_invalid() {
            reason = format!("undecodable bytes at +{:#x}", instr.ip() - entry);
            break;
        }
        if instr.ip() > entry && targets.contains(&instr.ip()) {
            reason = format!("+{:#x} is a branch target", instr.ip() - entry);
            break;
        }
        if is_emulated(instr) {
            return Ok(ProbeSpot {
                offset: instr.ip() - entry,
                instruction: format_instr(instr),
                emulated: true,
                stack_check_end,
                fallback: None,
            });
        }
        if let Some(reg) = writes_any(&mut factory, instr, needs) {
            reason = format!(
                "`{}` at +{:#x} overwrites {reg:?} first",
                format_instr(instr),
                instr.ip() - entry
            );
            break;
        }
        if instr.flow_control() != FlowControl::Next {
            reason = format!(
                "`{}` at +{:#x} leaves the straight-line prologue",
                format_instr(instr),
                instr.ip() - entry
            );
            break;
        }
    }
    let fallback = match start_index {
        Some(_) => format!("{reason}; single-stepping the first instruction after the stack check"),
        None => format!("{reason}; no stack-bound check (NOSPLIT?), probing the entry"),
    };
    Ok(ProbeSpot {
        offset: base.ip() - entry,
        instruction: format_instr(base),
        emulated: is_emulated(base),
        stack_check_end,
        fallback: Some(fallback),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGS: &[Register] = &[Register::RAX, Register::RBX];

    /// Check Go 1.27's small-frame prologue: `cmp rsp,[r14+0x10]; jbe; push rbp` → the probe
    /// goes on `push rbp` at +10, after the check.
    #[test]
    fn after_small_frame_check() {
        let code = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
            0x0f, 0x86, 0x10, 0x00, 0x00, 0x00, // jbe +0x10
            0x55, // push rbp
            0x48, 0x89, 0xe5, // mov rbp,rsp
            0x48, 0x83, 0xec, 0x48, // sub rsp,0x48
            0xc3, // ret
            0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
        ];
        let spot = entry_probe(&code, 0x1000, ARGS).unwrap();
        assert_eq!(spot.offset, 10, "{spot:?}");
        assert_eq!(spot.stack_check_end, Some(10));
        assert!(spot.emulated && spot.fallback.is_none());
        assert_eq!(spot.instruction, "push rbp");
        assert_eq!(ret_offsets(&code, 0x1000), vec![18]);
    }

    /// Check the large-frame form `lea r12,[rsp-N]; cmp r12,[r14+0x10]; jbe` and Go 1.19's
    /// frame setup without `push rbp`: the first emulated instruction is a later `nop`.
    #[test]
    fn after_large_frame_check() {
        let code = [
            0x4c, 0x8d, 0x64, 0x24, 0x80, // lea r12,[rsp-0x80]
            0x4d, 0x3b, 0x66, 0x10, // cmp r12,[r14+0x10]
            0x76, 0x10, // jbe +0x10
            0x48, 0x83, 0xec, 0x70, // sub rsp,0x70
            0x48, 0x89, 0x6c, 0x24, 0x68, // mov [rsp+0x68],rbp
            0x90, // nop
            0xc3,
        ];
        let spot = entry_probe(&code, 0x2000, ARGS).unwrap();
        assert_eq!(
            (spot.offset, spot.stack_check_end),
            (20, Some(11)),
            "{spot:?}"
        );
        assert!(spot.emulated);
    }

    /// Check that a write to a needed register before any emulated instruction falls back to
    /// the first instruction after the check (never to +0, which morestack re-executes).
    #[test]
    fn clobber_falls_back_after_check() {
        let code = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp,[r14+0x10]
            0x76, 0x08, // jbe
            0x48, 0x31, 0xc0, // xor rax,rax
            0x55, // push rbp
            0xc3,
        ];
        let spot = entry_probe(&code, 0x3000, ARGS).unwrap();
        assert_eq!(spot.offset, 6);
        assert!(!spot.emulated);
        assert!(spot.fallback.unwrap().contains("RAX"));
    }

    /// Check a function without a stack check (NOSPLIT): the search starts at the entry.
    #[test]
    fn nosplit_function() {
        let code = [0x48, 0x85, 0xc0, 0x74, 0x01, 0xc3, 0xc3];
        let spot = entry_probe(&code, 0x4000, ARGS).unwrap();
        assert_eq!((spot.offset, spot.stack_check_end), (3, None));
        assert_eq!(ret_offsets(&code, 0x4000), vec![5, 6]);
    }
}
