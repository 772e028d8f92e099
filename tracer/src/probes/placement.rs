//! Where in a function's prologue to put its entry probe.
//!
//! A uprobe replaces one instruction with a breakpoint. On hit, the kernel either *emulates* the
//! original instruction (push, relative jmp/call/jcc, nop: ~1 µs per hit here) or copies it out
//! and *single-steps* it (everything else, including `endbr64`, `test`, `mov`, `cmp`, `lea`:
//! ~10–24 µs). The first instruction of glibc's `free` is a `test`, of libstdc++'s functions an
//! `endbr64`, so probing at +0 would cost ten times more than needed.
//!
//! [`place_probe`] walks the straight-line prologue and picks the first emulated instruction
//! reached on every call before any needed argument register is overwritten (and, for
//! functions with a return probe, before the stack pointer moves, since the kernel finds the
//! return address at `[rsp]`). It never returns an offset that is not an instruction boundary,
//! and falls back to +0 when no such instruction exists.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
    Register,
};

/// Bytes of prologue examined.
pub const PROLOGUE_BYTES: u64 = 64;

/// What the probe must still see intact where it is placed.
#[derive(Clone, Copy, Debug)]
pub struct Needs<'a> {
    /// Argument registers the probe reads (full 64-bit names).
    pub registers: &'a [Register],
    /// The function also has a return probe: `rsp` must still point at the return address.
    pub return_address: bool,
}

/// Where the entry probe goes and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Offset from the function's start.
    pub offset: u64,
    /// The probed instruction, e.g. `push r12`.
    pub instruction: String,
    /// Whether the kernel emulates it (cheap) instead of single-stepping it.
    pub emulated: bool,
    /// Set when no emulated instruction qualified and the probe fell back to +0.
    pub fallback: Option<String>,
    /// Where a frame-pointer walk started at this probe finds the immediate caller.
    pub caller: CallerAt,
}

/// Where the immediate caller of the probed function is, for a stack captured at the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerAt {
    /// In the frame-pointer chain: the function has made its frame before the probe.
    Chain,
    /// At `[rsp]`, before the frame exists, on `push %rbp` or `endbr64`: the kernel's walk
    /// (`bpf_get_stack`) reads it there by itself.
    RspKernelReads,
    /// At `[rsp]`, before the frame exists: only a read there finds it.
    Rsp,
}

impl CallerAt {
    /// Whether the eBPF side must read the caller at `[rsp]` (`STACK_CALLER_FIXUP`), for a stack
    /// walked by the kernel or by the eBPF program itself (`STACK_OWN_WALK`).
    pub fn needs_read(self, own_walk: bool) -> bool {
        match self {
            CallerAt::Chain => false,
            CallerAt::RspKernelReads => own_walk,
            CallerAt::Rsp => true,
        }
    }
}

impl Placement {
    /// One line for run.json and logs.
    pub fn describe(&self) -> String {
        let how = if self.emulated {
            "emulated"
        } else {
            "single-stepped"
        };
        match &self.fallback {
            None => format!("+{:#x} `{}` ({how})", self.offset, self.instruction),
            Some(why) => format!(
                "+{:#x} `{}` ({how}; fallback: {why})",
                self.offset, self.instruction
            ),
        }
    }
}

/// Whether the x86 uprobe code emulates this instruction rather than single-stepping it
/// (arch/x86/kernel/uprobes.c: `branch_setup_xol_ops`, `push_setup_xol_ops`, nop emulation;
/// measured on this kernel: 0.9–1.0 µs against ~10 µs for `endbr64`/`test`/`mov`).
pub fn is_emulated(instr: &Instruction) -> bool {
    match instr.code() {
        Code::Push_r64 => true,
        Code::Nopd | Code::Nopw | Code::Nopq | Code::Nop_rm16 | Code::Nop_rm32 | Code::Nop_rm64 => {
            true
        }
        Code::Jmp_rel8_64 | Code::Jmp_rel32_64 | Code::Call_rel32_64 => true,
        _ => instr.flow_control() == FlowControl::ConditionalBranch && instr.is_jcc_short_or_near(),
    }
}

/// The first of `registers` that `instr` writes (fully or in part, maybe conditionally).
pub(crate) fn writes_any(
    factory: &mut InstructionInfoFactory,
    instr: &Instruction,
    registers: &[Register],
) -> Option<Register> {
    factory
        .info(instr)
        .used_registers()
        .iter()
        .find_map(|used| {
            let writes = matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::ReadWrite
                    | OpAccess::CondWrite
                    | OpAccess::ReadCondWrite
            );
            let full = used.register().full_register();
            (writes && registers.contains(&full)).then_some(full)
        })
}

/// Direct branch targets inside `[start, end)`, from decoding the whole function.
fn branch_targets(function: &[u8], start: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, function, start, DecoderOptions::NONE);
    let mut targets = Vec::new();
    let end = start + function.len() as u64;
    for instr in &mut decoder {
        if matches!(
            instr.flow_control(),
            FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch | FlowControl::Call
        ) {
            let target = instr.near_branch_target();
            if target > start && target < end {
                targets.push(target);
            }
        }
    }
    targets
}

/// Chooses the entry-probe offset for a function starting at `start` whose bytes (the whole
/// function when its size is known, else at least [`PROLOGUE_BYTES`]) are `code`.
pub fn place_probe(code: &[u8], start: u64, needs: Needs<'_>) -> Placement {
    let mut factory = InstructionInfoFactory::new();
    let prologue = &code[..code.len().min(PROLOGUE_BYTES as usize)];
    let mut decoder = Decoder::with_ip(64, prologue, start, DecoderOptions::NONE);
    let mut first: Option<Instruction> = None;
    let mut stop_reason = String::from("no emulated instruction in the prologue");
    // A probe at +N fires again for every jump back into (start, start+N]; such a spot is not
    // "once per call", so the search stops before any branch target.
    let targets = branch_targets(code, start);

    for instr in &mut decoder {
        if instr.is_invalid() {
            stop_reason = "undecodable bytes".into();
            break;
        }
        if first.is_none() {
            first = Some(instr);
        }
        if instr.ip() > start && targets.contains(&instr.ip()) {
            stop_reason = format!("+{:#x} is a branch target", instr.ip() - start);
            break;
        }
        if is_emulated(&instr) {
            return Placement {
                offset: instr.ip() - start,
                instruction: format_instr(&instr),
                emulated: true,
                fallback: None,
                caller: caller_at(&instr),
            };
        }
        if let Some(reg) = writes_any(&mut factory, &instr, needs.registers) {
            stop_reason = format!(
                "`{}` overwrites argument register {reg:?}",
                format_instr(&instr)
            );
            break;
        }
        if needs.return_address && writes_any(&mut factory, &instr, &[Register::RSP]).is_some() {
            stop_reason = format!(
                "`{}` moves the stack pointer before any emulated instruction",
                format_instr(&instr)
            );
            break;
        }
        if instr.flow_control() != FlowControl::Next {
            stop_reason = format!(
                "`{}` leaves the straight-line prologue",
                format_instr(&instr)
            );
            break;
        }
    }
    let (instruction, emulated) = first.map_or((String::from("?"), false), |i| {
        (format_instr(&i), is_emulated(&i))
    });
    Placement {
        offset: 0,
        instruction,
        emulated,
        fallback: (!emulated).then_some(stop_reason),
        caller: first.as_ref().map_or(CallerAt::Rsp, caller_at),
    }
}

/// For a probe at a function's entry (before its frame exists).
fn caller_at(instr: &Instruction) -> CallerAt {
    if (instr.code() == Code::Push_r64 && instr.op0_register() == Register::RBP)
        || instr.code() == Code::Endbr64
    {
        CallerAt::RspKernelReads
    } else {
        CallerAt::Rsp
    }
}

fn format_instr(instr: &Instruction) -> String {
    let mut formatter = iced_x86::FastFormatter::new();
    let mut out = String::new();
    formatter.format(instr, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSV_ARG0: &[Register] = &[Register::RDI];

    fn place(code: &[u8], regs: &[Register], ret: bool) -> Placement {
        place_probe(
            code,
            0x1000,
            Needs {
                registers: regs,
                return_address: ret,
            },
        )
    }

    /// Check glibc 2.36 `free`: `test rdi,rdi; je ...` → the probe goes on the `je` at +3.
    #[test]
    fn free_probe_on_jcc() {
        let code = [0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55];
        let p = place(&code, SYSV_ARG0, false);
        assert_eq!((p.offset, p.emulated), (3, true), "{p:?}");
    }

    /// Check glibc `malloc`: `push r12` at +0 is emulated and fine for a return probe.
    #[test]
    fn malloc_probe_at_push() {
        let code = [0x41, 0x54, 0x55, 0x53, 0x48, 0x89, 0xfb];
        let p = place(&code, SYSV_ARG0, true);
        assert_eq!((p.offset, p.emulated), (0, true));
        assert_eq!(p.instruction, "push r12");
    }

    /// Check who reads the caller for a stack captured at the probe: on `push r12` it is at
    /// `[rsp]` and only a read there finds it; on `push rbp` the kernel's walk reads it by
    /// itself, but the eBPF program's own walk must; once the frame exists, nobody.
    #[test]
    fn caller_of_entry_probes() {
        let push_r12 = place(&[0x41, 0x54, 0x55, 0x53], SYSV_ARG0, true);
        assert_eq!(push_r12.caller, CallerAt::Rsp);
        let push_rbp = place(&[0x55, 0x48, 0x89, 0xe5], SYSV_ARG0, true);
        assert_eq!(push_rbp.caller, CallerAt::RspKernelReads);
        let reads = |caller: CallerAt| [false, true].map(|own_walk| caller.needs_read(own_walk));
        assert_eq!(reads(CallerAt::Rsp), [true, true]);
        assert_eq!(reads(CallerAt::RspKernelReads), [false, true]);
        assert_eq!(reads(CallerAt::Chain), [false, false]);
    }

    /// Check libstdc++ `operator new`: `endbr64; test; mov eax,1; push rbx` → +12, because
    /// none of the skipped instructions writes rdi or rsp.
    #[test]
    fn skips_endbr64() {
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, // endbr64
            0x48, 0x85, 0xff, // test rdi,rdi
            0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax,1
            0x53, // push rbx
        ];
        let p = place(&code, SYSV_ARG0, true);
        assert_eq!((p.offset, p.emulated), (12, true), "{p:?}");
    }

    /// Check that a write to a needed argument register stops the search (reallocarray's
    /// `mul rdx` clobbers its third argument) and falls back to +0.
    #[test]
    fn argument_overwrite_falls_back() {
        let code = [
            0x48, 0x89, 0xf0, 0x48, 0xf7, 0xe2, 0x48, 0x89, 0xc6, 0x70, 0x05,
        ];
        let p = place(&code, &[Register::RDI, Register::RSI, Register::RDX], true);
        assert_eq!(p.offset, 0);
        assert!(!p.emulated);
        assert!(p.fallback.unwrap().contains("RDX"));
    }

    /// Check that with a return probe, `sub rsp` before any emulated instruction forces +0.
    #[test]
    fn stack_move_blocks_return_probe() {
        let code = [0x48, 0x83, 0xec, 0x18, 0x55];
        assert_eq!(place(&code, SYSV_ARG0, true).offset, 0);
        assert_eq!(place(&code, SYSV_ARG0, false).offset, 4);
    }

    /// Check that the probe never lands on an instruction that a branch in the function jumps
    /// back to (it would fire more than once per call).
    #[test]
    fn avoids_branch_targets() {
        // +0 test rdi,rdi; +3 nop; +4 jmp +3 (back edge)
        let code = [0x48, 0x85, 0xff, 0x90, 0xeb, 0xfd];
        let p = place(&code, SYSV_ARG0, false);
        assert_eq!(p.offset, 0);
        assert!(p.fallback.unwrap().contains("branch target"));
    }

    /// Check that offsets are always instruction boundaries: every chosen offset decodes to an
    /// instruction starting exactly there, for every function in libc.
    #[test]
    fn libc_offsets_are_boundaries() {
        let image =
            crate::elf::ElfImage::open(std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6"))
                .unwrap();
        let mut emulated = 0;
        let symbols = image.function_symbols();
        for sym in symbols.iter().filter(|s| s.size > 0) {
            let code = image.bytes_at(sym.address, sym.size).unwrap();
            let p = place_probe(
                code,
                sym.address,
                Needs {
                    registers: SYSV_ARG0,
                    return_address: false,
                },
            );
            let boundaries: Vec<u64> =
                Decoder::with_ip(64, code, sym.address, DecoderOptions::NONE)
                    .into_iter()
                    .map(|i| i.ip() - sym.address)
                    .collect();
            assert!(
                boundaries.contains(&p.offset),
                "{} +{:#x}",
                sym.name,
                p.offset
            );
            emulated += usize::from(p.emulated);
        }
        assert!(
            emulated > symbols.len() / 2,
            "{emulated} of {}",
            symbols.len()
        );
    }
}
