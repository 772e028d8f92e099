//! `.gopclntab` (functions of a stripped binary) and `runtime.firstmoduledata`.
//!
//! Layout (Go ≥ 1.18, magics `0xfffffff0` for 1.18/1.19 and `0xfffffff1` for 1.20+, Go 1.27.3
//! `src/internal/abi/symtab.go` lines 22-34): a `pcHeader` (Go 1.27.3 `src/runtime/symtab.go`
//! line 376; 1.19 `src/runtime/symtab.go` line 395) of
//! `magic u32, pad u8 ×2, minLC u8, ptrSize u8, nfunc, nfiles, textStart, funcnameOffset,
//! cuOffset, filetabOffset, pctabOffset, pclnOffset` (words of `ptrSize`). `textStart` is only
//! stored by older versions (1.19 does); 1.27 leaves it zero and uses `moduledata.text`. At `pclnOffset`, the
//! function table has `nfunc+1` pairs `{entryoff u32, funcoff u32}` (`funcoff` relative to the
//! same table) and each `_func` starts `entryOff u32, nameOff i32, args i32, deferreturn u32,
//! pcsp u32, …`; names are NUL-terminated in `funcnametab`. A function's end is where its
//! `pcsp` pc-value table ends (`runtime.step`, symtab.go 1118 / 1284: zig-zag value delta
//! then pc delta, both uvarints, a zero value delta after the first pair ends the table),
//! which is exactly the function's size without the alignment padding that follows it (the
//! tests compare it with `.symtab` sizes for every function). `_func.flag` (`FuncFlagAsm` =
//! 4) follows `funcID` at offset 37 (1.18/1.19) or 41 (1.20+, after `startLine`).

use super::{GoFunc, buildinfo::uvarint, file::GoFile};

const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;
const HEADER_SIZE: u64 = 72;

/// The parsed `pcHeader`, with absolute addresses of its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pclntab {
    pub address: u64,
    pub magic: u32,
    pub nfunc: u64,
    /// `textStart` as stored (0 from Go 1.2x on: then `moduledata.text` is the base).
    pub text_start: u64,
    pub funcnametab: u64,
    pub pctab: u64,
    pub functab: u64,
    /// Where the mapped bytes after the header end (bounds every read).
    pub limit: u64,
    pub min_lc: u8,
}

fn header_at(file: &GoFile, address: u64) -> Option<Pclntab> {
    let seg = file.segment_of(address)?;
    let limit = seg.address.saturating_add(seg.file_size);
    let h = file.read(address, HEADER_SIZE)?;
    let magic = u32::from_le_bytes(h[0..4].try_into().ok()?);
    if !(magic == MAGIC_GO118 || magic == MAGIC_GO120) || h[4] != 0 || h[5] != 0 || h[7] != 8 {
        return None;
    }
    let word =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(h.get(i..i + 8)?.try_into().ok()?)) };
    let nfunc = word(8)?;
    let rel = |off: u64| -> Option<u64> {
        let abs = address.checked_add(off)?;
        (abs < limit).then_some(abs)
    };
    let table = Pclntab {
        address,
        magic,
        nfunc,
        text_start: word(24)?,
        funcnametab: rel(word(32)?)?,
        pctab: rel(word(56)?)?,
        functab: rel(word(64)?)?,
        limit,
        min_lc: h[6],
    };
    // The function table must fit.
    let functab_end = table
        .functab
        .checked_add(nfunc.checked_add(1)?.checked_mul(8)?)?;
    (nfunc > 0 && functab_end <= limit && table.min_lc >= 1).then_some(table)
}

/// Finds and parses the pcHeader: the `.gopclntab` section, the `runtime.pclntab` symbol, or
/// (no section headers) a scan of the data segments for the header's first 8 bytes.
pub(super) fn find(file: &GoFile) -> Result<Pclntab, String> {
    let mut tried = Vec::new();
    if let Some(section) = file.section_like(".gopclntab") {
        match header_at(file, section.address) {
            Some(t) => return Ok(t),
            None => tried.push(format!(
                "section {} at {:#x} has no Go ≥1.18 pcHeader",
                section.name, section.address
            )),
        }
    }
    if let Some(sym) = file.symbol("runtime.pclntab")
        && let Some(t) = header_at(file, sym.address)
    {
        return Ok(t);
    }
    match scan_pclntab(file) {
        Some(t) => Ok(t),
        None => {
            tried.push("no Go ≥1.18 pcHeader found in the data segments".into());
            Err(tried.join("; "))
        }
    }
}

/// Scans the data segments for a pcHeader (magic, two zero pads, minLC 1, ptrSize 8).
pub(super) fn scan_pclntab(file: &GoFile) -> Option<Pclntab> {
    // Not only read-only segments: a PIE keeps the pclntab in RELRO (`.data.rel.ro.gopclntab`).
    for seg in file.segments.iter().filter(|s| !s.executable) {
        let Some(bytes) = file.read(seg.address, seg.file_size) else {
            continue;
        };
        for magic in [MAGIC_GO120, MAGIC_GO118] {
            let mut pattern = magic.to_le_bytes().to_vec();
            pattern.extend_from_slice(&[0, 0, 1, 8]);
            let mut at = 0;
            while let Some(pos) = find_bytes(&bytes[at..], &pattern) {
                let address = GoFile::at(seg.address, (at + pos) as u64)?;
                if address.is_multiple_of(8)
                    && let Some(t) = header_at(file, address)
                {
                    return Some(t);
                }
                at += pos + 1;
            }
        }
    }
    None
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where `runtime.firstmoduledata` is and the fields of it alloctrace uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ModuleData {
    pub address: u64,
    /// `moduledata.text`: base of the pclntab's entry offsets.
    pub text: u64,
    /// `[types, etypes)`: the type descriptors, base of `nameOff`s.
    pub types: u64,
    pub etypes: u64,
    /// How it was found.
    pub source: String,
}

// Byte offsets in `moduledata` (Go 1.19 `src/runtime/symtab.go` line 415, Go 1.27.3 line 402):
// pcHeader 0, six slices 8..152, findfunctab 152, minpc 160, maxpc 168, text 176, etext 184,
// noptrdata..enoptrbss 192..256; then Go ≤1.19 has end, gcdata, gcbss, types (280), etypes
// (288); Go 1.20+ inserts covctrs, ecovctrs before end, so types is at 296, followed by etypes
// (304) or, in 1.27, typedesclen (304) and etypes (312).
const MD_FUNCNAMETAB: u64 = 8;
const MD_MINPC: u64 = 160;
const MD_TEXT: u64 = 176;
const MD_TYPES_GO118: u64 = 280;
const MD_TYPES_GO120: u64 = 296;

fn moduledata_at(file: &GoFile, address: u64, pcln: &Pclntab) -> Option<ModuleData> {
    let field = |off: u64| file.read_u64(GoFile::at(address, off)?);
    if field(0)? != pcln.address || field(MD_FUNCNAMETAB)? != pcln.funcnametab {
        return None;
    }
    let text = field(MD_TEXT)?;
    let minpc = field(MD_MINPC)?;
    if text == 0 || minpc < text || !file.segment_of(text).is_some_and(|s| s.executable) {
        return None;
    }
    let (types, etypes) = if pcln.magic == MAGIC_GO118 {
        (field(MD_TYPES_GO118)?, field(MD_TYPES_GO118 + 8)?)
    } else {
        let types = field(MD_TYPES_GO120)?;
        let next = field(MD_TYPES_GO120 + 8)?;
        // A pointer past `types` is etypes; a smaller value is 1.27's typedesclen.
        let etypes = if next > types {
            next
        } else {
            field(MD_TYPES_GO120 + 16)?
        };
        (types, etypes)
    };
    let seg = file.segment_of(types)?;
    if etypes <= types || etypes > seg.address.saturating_add(seg.file_size) {
        return None;
    }
    Some(ModuleData {
        address,
        text,
        types,
        etypes,
        source: String::new(),
    })
}

/// Finds `runtime.firstmoduledata`: its symbol, the `.go.module` section (Go 1.26+ puts it
/// there), or [`scan_moduledata`].
pub(super) fn find_moduledata(file: &GoFile, pcln: &Pclntab) -> Result<ModuleData, String> {
    if let Some(sym) = file.symbol("runtime.firstmoduledata")
        && let Some(mut md) = moduledata_at(file, sym.address, pcln)
    {
        md.source = "symbol runtime.firstmoduledata".into();
        return Ok(md);
    }
    if let Some(section) = file.section_like(".go.module")
        && let Some(mut md) = moduledata_at(file, section.address, pcln)
    {
        md.source = format!("section {}", section.name);
        return Ok(md);
    }
    scan_moduledata(file, pcln)
}

/// Finds the moduledata by scanning the writable segments for a word holding the pcHeader
/// address followed by the `funcnametab` pointer (and plausible text and types fields).
pub(super) fn scan_moduledata(file: &GoFile, pcln: &Pclntab) -> Result<ModuleData, String> {
    let needle = pcln.address.to_le_bytes();
    for seg in file.segments.iter().filter(|s| s.writable) {
        let Some(bytes) = file.read(seg.address, seg.file_size) else {
            continue;
        };
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            if chunk == needle {
                let Some(address) = GoFile::at(seg.address, 8 * i as u64) else {
                    break;
                };
                if let Some(mut md) = moduledata_at(file, address, pcln) {
                    md.source = format!("scan for the pcHeader address, at {address:#x}");
                    return Ok(md);
                }
            }
        }
    }
    Err(format!(
        "no moduledata points at the pcHeader at {:#x}",
        pcln.address
    ))
}

/// NUL-terminated name at `address`.
fn c_string(file: &GoFile, address: u64, limit: u64) -> Option<String> {
    let max = limit.checked_sub(address)?.min(4096);
    let bytes = file.read(address, max)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    String::from_utf8(bytes[..end].to_vec()).ok()
}

/// Sum of the pc deltas of the pc-value table at `address`: the function's size.
fn pcvalue_span(file: &GoFile, address: u64, limit: u64, quantum: u64) -> Option<u64> {
    let max = limit.checked_sub(address)?.min(1 << 20);
    let bytes = file.read(address, max)?;
    let mut at = 0usize;
    let mut span = 0u64;
    let mut first = true;
    loop {
        let (value_delta, used) = uvarint(bytes.get(at..)?)?;
        if value_delta == 0 && !first {
            return Some(span);
        }
        first = false;
        at += used;
        let (pc_delta, used) = uvarint(bytes.get(at..)?)?;
        at += used;
        span = span.checked_add(pc_delta.checked_mul(quantum)?)?;
    }
}

/// `_func.flag` offset: after `funcID` at 36 (Go 1.18/1.19) or, with `startLine` inserted, 40.
fn flag_offset(magic: u32) -> u64 {
    if magic == MAGIC_GO118 { 37 } else { 41 }
}

/// `abi.FuncFlagAsm` (1.19 `funcFlag_ASM`): TopFrame 1, SPWrite 2, Asm 4 in both versions.
const FUNC_FLAG_ASM: u8 = 1 << 2;

/// Every function in the function table, with its end from its pcsp table (or, without one,
/// the next function's entry).
///
/// Names: the table names a function and its ABI wrapper alike, where `.symtab` appends
/// `.abi0` to the ABI0 one of such a pair (`cmd/link/internal/ld/symtab.go` `mangleABIName`).
/// The same is done here: in a pair with one assembly function (`FuncFlagAsm`), that one is
/// ABI0; in a pair of Go functions, the ABI0 one is the wrapper, i.e. the one that calls or
/// jumps to the other.
pub(super) fn functions(file: &GoFile, pcln: &Pclntab, text: u64) -> Result<Vec<GoFunc>, String> {
    let n = usize::try_from(pcln.nfunc).map_err(|_| "nfunc too large".to_string())?;
    let table_len = pcln
        .nfunc
        .checked_add(1)
        .and_then(|n| n.checked_mul(8))
        .ok_or("nfunc too large")?;
    let table = file
        .read(pcln.functab, table_len)
        .ok_or("function table not mapped")?;
    let pair = |i: usize| -> (u64, u64) {
        let at = i * 8;
        let word = |o: usize| {
            table
                .get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        (u64::from(word(at)), u64::from(word(at + 4)))
    };
    let mut out = Vec::with_capacity(n);
    let mut asm = Vec::with_capacity(n);
    for i in 0..n {
        let (entry_off, func_off) = pair(i);
        let (next_entry_off, _) = pair(i + 1);
        let func = pcln.functab + func_off;
        let bad = || format!("function {i}: _func at {func:#x} out of bounds");
        let name_off = file.read_u32(func + 4).ok_or_else(bad)?;
        let pcsp = file.read_u32(func + 16).ok_or_else(bad)?;
        let flag = file
            .read_u8(func + flag_offset(pcln.magic))
            .ok_or_else(bad)?;
        let name = c_string(file, pcln.funcnametab + u64::from(name_off), pcln.limit)
            .ok_or_else(|| format!("function {i}: bad name offset {name_off:#x}"))?;
        let entry = text + entry_off;
        let size = if pcsp != 0 {
            pcvalue_span(
                file,
                pcln.pctab + u64::from(pcsp),
                pcln.limit,
                u64::from(pcln.min_lc),
            )
        } else {
            None
        };
        let end = match size {
            Some(size) if size > 0 => entry + size,
            _ => text + next_entry_off.max(entry_off),
        };
        out.push(GoFunc { name, entry, end });
        asm.push(flag & FUNC_FLAG_ASM != 0);
    }
    name_abi0_pairs(file, &mut out, &asm);
    Ok(out)
}

/// Whether `from`'s code has a direct call or jump to `to`'s entry.
fn calls(file: &GoFile, from: &GoFunc, to: &GoFunc) -> bool {
    let Some(code) = file.read(from.entry, from.end.saturating_sub(from.entry)) else {
        return false;
    };
    iced_x86::Decoder::with_ip(64, code, from.entry, iced_x86::DecoderOptions::NONE)
        .into_iter()
        .any(|i| {
            i.op0_kind() == iced_x86::OpKind::NearBranch64 && i.near_branch_target() == to.entry
        })
}

fn name_abi0_pairs(file: &GoFile, funcs: &mut [GoFunc], asm: &[bool]) {
    let mut by_name: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, f) in funcs.iter().enumerate() {
        by_name.entry(f.name.as_str()).or_default().push(i);
    }
    let pairs: Vec<(usize, usize)> = by_name
        .values()
        .filter_map(|ix| match ix.as_slice() {
            [a, b] => Some((*a, *b)),
            _ => None,
        })
        .collect();
    for (a, b) in pairs {
        let abi0 = match (asm[a], asm[b]) {
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => match (
                calls(file, &funcs[a], &funcs[b]),
                calls(file, &funcs[b], &funcs[a]),
            ) {
                (true, false) => Some(a),
                (false, true) => Some(b),
                _ => None,
            },
            (true, true) => None,
        };
        if let Some(i) = abi0 {
            funcs[i].name.push_str(".abi0");
        }
    }
}
