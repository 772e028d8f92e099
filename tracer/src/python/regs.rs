//! x86-64 register names (GAS syntax, as in USDT argument specs) and DWARF register numbers.

use iced_x86::Register;

/// SysV integer argument registers, in order.
pub(crate) const SYSV_ARGS: [Register; 6] = [
    Register::RDI,
    Register::RSI,
    Register::RDX,
    Register::RCX,
    Register::R8,
    Register::R9,
];

/// A general-purpose register by its AT&T name without `%` (`rax`, `eax`, `ax`, `al`, `r12d`,
/// `rip`, ...).
pub(crate) fn parse_gas(name: &str) -> Option<Register> {
    use Register::*;
    const TABLE: &[(&str, Register)] = &[
        ("rax", RAX),
        ("rbx", RBX),
        ("rcx", RCX),
        ("rdx", RDX),
        ("rsi", RSI),
        ("rdi", RDI),
        ("rbp", RBP),
        ("rsp", RSP),
        ("eax", EAX),
        ("ebx", EBX),
        ("ecx", ECX),
        ("edx", EDX),
        ("esi", ESI),
        ("edi", EDI),
        ("ebp", EBP),
        ("esp", ESP),
        ("ax", AX),
        ("bx", BX),
        ("cx", CX),
        ("dx", DX),
        ("si", SI),
        ("di", DI),
        ("bp", BP),
        ("sp", SP),
        ("al", AL),
        ("bl", BL),
        ("cl", CL),
        ("dl", DL),
        ("sil", SIL),
        ("dil", DIL),
        ("bpl", BPL),
        ("spl", SPL),
        ("ah", AH),
        ("bh", BH),
        ("ch", CH),
        ("dh", DH),
        ("rip", RIP),
        ("eip", EIP),
    ];
    if let Some(&(_, reg)) = TABLE.iter().find(|(n, _)| *n == name) {
        return Some(reg);
    }
    // r8..r15 with suffixes: r8, r8d, r8w, r8b (also r8l).
    let rest = name.strip_prefix('r')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n: usize = rest.get(..digits)?.parse().ok()?;
    if !(8..=15).contains(&n) {
        return Option::None;
    }
    let i = n - 8;
    let (q, d, w, b) = (
        [R8, R9, R10, R11, R12, R13, R14, R15],
        [R8D, R9D, R10D, R11D, R12D, R13D, R14D, R15D],
        [R8W, R9W, R10W, R11W, R12W, R13W, R14W, R15W],
        [R8L, R9L, R10L, R11L, R12L, R13L, R14L, R15L],
    );
    match rest.get(digits..)? {
        "" => Some(q[i]),
        "d" => Some(d[i]),
        "w" => Some(w[i]),
        "b" | "l" => Some(b[i]),
        _ => Option::None,
    }
}

/// The general-purpose register with this DWARF number (x86-64 psABI: 0 rax, 1 rdx, 2 rcx,
/// 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8–15 r8–r15).
pub(crate) fn from_dwarf(number: u16) -> Option<Register> {
    use Register::*;
    const TABLE: [Register; 16] = [
        RAX, RDX, RCX, RBX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15,
    ];
    TABLE.get(usize::from(number)).copied()
}
