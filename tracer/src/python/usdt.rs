//! SystemTap SDT probes (`.note.stapsdt`), parsed from the ELF notes.
//!
//! Each note (owner `stapsdt`, type 3) carries, for one probe site: the probe's address (a
//! `nop`), the link-time address of `.stapsdt.base`, the semaphore's address (0 when none),
//! then three NUL-terminated strings: provider, name, argument specs. When the file was moved
//! after linking (prelink), every address is off by `.stapsdt.base`'s actual address minus the
//! recorded one; both the probe address and the semaphore are corrected by that difference.
//! The semaphore is a `u16` counter the probe's `if (PyDTrace_GC_START_ENABLED())` guard
//! reads; the kernel increments it for a uprobe attached with `ref_ctr_offset` = its file
//! offset, which is why both offsets are given.
//!
//! Argument specs are GAS operands prefixed with `[-]SIZE@`: `-4@%eax`, `8@%rbx`,
//! `-4@112(%rsp)`, `8@$5`, `-8@-16(%rbp,%rax,8)`, `8@sym+4(%rip)`.

use iced_x86::Register;

use super::{binary::Binary, regs};

/// A USDT probe site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
    /// Address of the probe's `nop` in the file, after the `.stapsdt.base` correction.
    pub pc: u64,
    /// File offset of the `nop`: the uprobe's offset.
    pub file_offset: u64,
    /// Semaphore address (corrected), if the probe has one.
    pub semaphore: Option<u64>,
    /// File offset of the semaphore: `ref_ctr_offset` for `perf_event_open`.
    pub semaphore_offset: Option<u64>,
    pub args: Vec<UsdtArg>,
    /// The argument string as written in the note.
    pub raw_args: String,
}

/// One argument of a USDT probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtArg {
    /// Size in bytes (1, 2, 4 or 8).
    pub size: u8,
    pub signed: bool,
    pub location: UsdtLocation,
}

/// Where a USDT argument's value is at the probe site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsdtLocation {
    /// The value is in this register (possibly a sub-register such as `eax`: read the full
    /// register and truncate to `size`).
    Register(Register),
    /// The value is in memory at `base + index * scale + offset` (+ the address of `symbol`
    /// for `sym(%rip)` operands).
    Memory {
        base: Option<Register>,
        index: Option<Register>,
        scale: u8,
        offset: i64,
        symbol: Option<String>,
    },
    /// A constant.
    Immediate(i64),
    /// An operand this parser does not understand (kept verbatim).
    Unknown(String),
}

const NT_STAPSDT: u32 = 3;

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

/// Parses every probe in the file's `.note.stapsdt`; `None` when there is no such section.
pub(crate) fn parse(bin: &Binary) -> Option<Vec<UsdtProbe>> {
    let notes = bin.section_data(".note.stapsdt")?;
    let actual_base = bin.section(".stapsdt.base").map(|s| s.address);
    let mut probes = Vec::new();
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let (Some(namesz), Some(descsz), Some(kind)) = (
            u32_at(notes, at),
            u32_at(notes, at + 4),
            u32_at(notes, at + 8),
        ) else {
            break;
        };
        let name_start = at + 12;
        let Some(desc_start) = usize::try_from(namesz)
            .ok()
            .and_then(|n| align4(name_start.checked_add(n)?))
        else {
            break;
        };
        let Some(next) = usize::try_from(descsz)
            .ok()
            .and_then(|n| align4(desc_start.checked_add(n)?))
        else {
            break;
        };
        let owner = notes.get(name_start..name_start.saturating_add(namesz as usize));
        let desc = notes.get(desc_start..desc_start.saturating_add(descsz as usize));
        at = next;
        if kind != NT_STAPSDT || owner != Some(b"stapsdt\0".as_slice()) {
            continue;
        }
        if let Some(probe) = desc.and_then(|d| parse_note(bin, d, actual_base)) {
            probes.push(probe);
        }
    }
    Some(probes)
}

fn parse_note(bin: &Binary, desc: &[u8], actual_base: Option<u64>) -> Option<UsdtProbe> {
    let pc = u64_at(desc, 0)?;
    let recorded_base = u64_at(desc, 8)?;
    let semaphore = u64_at(desc, 16)?;
    let mut strings = desc.get(24..)?.split(|&b| b == 0);
    let provider = std::str::from_utf8(strings.next()?).ok()?.to_owned();
    let name = std::str::from_utf8(strings.next()?).ok()?.to_owned();
    let raw_args = std::str::from_utf8(strings.next().unwrap_or(&[]))
        .ok()?
        .to_owned();
    // Prelink correction: the note records link-time addresses.
    let adjust = |address: u64| match actual_base {
        Some(actual) if recorded_base != 0 => {
            address.wrapping_add(actual).wrapping_sub(recorded_base)
        }
        _ => address,
    };
    let pc = adjust(pc);
    let semaphore = (semaphore != 0).then(|| adjust(semaphore));
    Some(UsdtProbe {
        provider,
        name,
        pc,
        file_offset: bin.image.file_offset(pc)?,
        semaphore,
        semaphore_offset: semaphore.and_then(|s| bin.image.file_offset(s)),
        args: parse_args(&raw_args),
        raw_args,
    })
}

/// Parses a whole argument string (space-separated specs).
pub(crate) fn parse_args(text: &str) -> Vec<UsdtArg> {
    text.split_whitespace().map(parse_arg).collect()
}

fn parse_arg(spec: &str) -> UsdtArg {
    // `[-]N@operand`; specs without a size are 8-byte unsigned.
    let (size, signed, operand) = match spec.split_once('@') {
        Some((size_text, operand)) => {
            let (signed, digits) = match size_text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, size_text),
            };
            match digits.parse::<u8>() {
                Ok(size @ (1 | 2 | 4 | 8)) => (size, signed, operand),
                _ => {
                    return UsdtArg {
                        size: 8,
                        signed: false,
                        location: UsdtLocation::Unknown(spec.to_owned()),
                    };
                }
            }
        }
        None => (8, false, spec),
    };
    UsdtArg {
        size,
        signed,
        location: parse_operand(operand)
            .unwrap_or_else(|| UsdtLocation::Unknown(operand.to_owned())),
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative { -value } else { value })
}

fn parse_operand(operand: &str) -> Option<UsdtLocation> {
    if let Some(reg) = operand.strip_prefix('%') {
        return regs::parse_gas(reg).map(UsdtLocation::Register);
    }
    if let Some(imm) = operand.strip_prefix('$') {
        return parse_int(imm).map(UsdtLocation::Immediate);
    }
    // [displacement](%base[,%index[,scale]]) or a bare displacement.
    let (disp, inner) = match operand.find('(') {
        Some(open) => {
            let inner = operand.get(open + 1..)?.strip_suffix(')')?;
            (operand.get(..open)?, Some(inner))
        }
        None => (operand, None),
    };
    let (offset, symbol) = parse_displacement(disp)?;
    let (mut base, mut index, mut scale) = (None, None, 1u8);
    if let Some(inner) = inner {
        let mut parts = inner.split(',').map(str::trim);
        if let Some(b) = parts.next().filter(|b| !b.is_empty()) {
            base = Some(regs::parse_gas(b.strip_prefix('%')?)?);
        }
        if let Some(i) = parts.next() {
            index = Some(regs::parse_gas(i.strip_prefix('%')?)?);
        }
        if let Some(s) = parts.next() {
            scale = s.parse().ok().filter(|s| matches!(s, 1 | 2 | 4 | 8))?;
        }
        if parts.next().is_some() {
            return None;
        }
    }
    Some(UsdtLocation::Memory {
        base,
        index,
        scale,
        offset,
        symbol,
    })
}

/// `112`, `-0x10`, `sym`, `sym+8`, `sym-8`, or empty.
fn parse_displacement(disp: &str) -> Option<(i64, Option<String>)> {
    if disp.is_empty() {
        return Some((0, None));
    }
    if let Some(value) = parse_int(disp) {
        return Some((value, None));
    }
    // A symbol, optionally followed by +N / -N.
    let split = disp
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i);
    let (name, offset) = match split {
        Some(i) => (disp.get(..i)?, parse_int(disp.get(i..)?)?),
        None => (disp, 0),
    };
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$');
    valid.then(|| (offset, Some(name.to_owned())))
}
