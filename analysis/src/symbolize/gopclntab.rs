//! Go's own symbol table, `.gopclntab`: function names, files and lines for Go binaries built
//! without DWARF and symbols (`-ldflags='-s -w'`), which every Go binary keeps because the
//! runtime needs it for tracebacks. No maintained Rust crate reads it, so this is written from
//! the format the Go runtime defines (`runtime/symtab.go`, `runtime/runtime2.go`).
//!
//! Supported: Go 1.16/1.17 (magic 0xfffffffa) and Go 1.18+ (0xfffffff0, 0xfffffff1). Older
//! tables are reported as unsupported. Inlined Go frames (the FUNCDATA inline tree) are not
//! expanded: the function that contains the code is reported.

use std::ops::Range;

/// Why a `.gopclntab` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PclntabError {
    #[error("unsupported .gopclntab version (magic {0:#x})")]
    Version(u32),
    #[error(".gopclntab is truncated or malformed")]
    Malformed,
}

/// The layout generation of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Go 1.16 and 1.17: absolute entry addresses in the function table.
    Go116,
    /// Go 1.18 and later: entries are 32-bit offsets from `text_start`.
    Go118,
}

/// A function found for an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFunction {
    pub name: String,
    /// Entry address of the function.
    pub entry: u64,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A parsed `.gopclntab` (borrowing the section's bytes).
#[derive(Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    layout: Layout,
    quantum: u32,
    ptr_size: usize,
    nfunc: usize,
    text_start: u64,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn uint_at(data: &[u8], at: usize, size: usize) -> Option<u64> {
    match size {
        4 => u32_at(data, at).map(u64::from),
        8 => {
            let bytes = data.get(at..at.checked_add(8)?)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        }
        _ => None,
    }
}

fn cstr_at(data: &[u8], at: usize) -> Option<&str> {
    let rest = data.get(at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Reads a base-128 varint at `*pos`.
fn uvarint(data: &[u8], pos: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    let mut shift = 0;
    loop {
        let byte = *data.get(*pos)?;
        *pos += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

impl<'a> Pclntab<'a> {
    /// Parses the header of a `.gopclntab` section. `text_section` is the address of `.text`,
    /// used when the table does not record the text start itself.
    pub fn parse(data: &'a [u8], text_section: u64) -> Result<Pclntab<'a>, PclntabError> {
        let magic = u32_at(data, 0).ok_or(PclntabError::Malformed)?;
        let layout = match magic {
            0xffff_fffa => Layout::Go116,
            0xffff_fff0 | 0xffff_fff1 => Layout::Go118,
            other => return Err(PclntabError::Version(other)),
        };
        let quantum = u32::from(*data.get(6).ok_or(PclntabError::Malformed)?);
        let ptr_size = usize::from(*data.get(7).ok_or(PclntabError::Malformed)?);
        if !matches!(ptr_size, 4 | 8) || quantum == 0 {
            return Err(PclntabError::Malformed);
        }
        let word =
            |i: usize| uint_at(data, 8 + i * ptr_size, ptr_size).ok_or(PclntabError::Malformed);
        let offset = |i: usize| {
            word(i).and_then(|v| usize::try_from(v).map_err(|_| PclntabError::Malformed))
        };
        let nfunc = offset(0)?;
        // Header words after magic: nfunc, nfiles, [textStart,] funcname, cu, file, pc, func.
        let (text_start, first) = match layout {
            Layout::Go116 => (text_section, 2),
            Layout::Go118 => (word(2)?, 3),
        };
        let table = Pclntab {
            data,
            layout,
            quantum,
            ptr_size,
            nfunc,
            text_start: if text_start == 0 {
                text_section
            } else {
                text_start
            },
            funcname: offset(first)?,
            cutab: offset(first + 1)?,
            filetab: offset(first + 2)?,
            pctab: offset(first + 3)?,
            functab: offset(first + 4)?,
        };
        // The function table must hold nfunc entries plus the end marker.
        let needed = nfunc
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(table.functab_field()))
            .and_then(|n| n.checked_add(table.functab))
            .ok_or(PclntabError::Malformed)?;
        if needed > data.len() {
            return Err(PclntabError::Malformed);
        }
        Ok(table)
    }

    /// Size of one field of the function table.
    fn functab_field(&self) -> usize {
        match self.layout {
            Layout::Go116 => self.ptr_size,
            Layout::Go118 => 4,
        }
    }

    /// Field `i` of the function table (entry, funcoff, entry, funcoff, ..., end).
    fn functab(&self, i: usize) -> Option<u64> {
        let size = self.functab_field();
        uint_at(self.data, self.functab + i * size, size)
    }

    /// Entry address of function `i` (`i == nfunc`: the end of the last function).
    fn entry(&self, i: usize) -> Option<u64> {
        let raw = self.functab(2 * i)?;
        Some(match self.layout {
            Layout::Go116 => raw,
            Layout::Go118 => self.text_start.checked_add(raw)?,
        })
    }

    /// Number of functions in the table.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The address range the table covers.
    pub fn text(&self) -> Option<Range<u64>> {
        Some(self.entry(0)?..self.entry(self.nfunc)?)
    }

    /// The function containing `pc`, with its file and line at `pc`.
    pub fn lookup(&self, pc: u64) -> Option<GoFunction> {
        let text = self.text()?;
        if !text.contains(&pc) {
            return None;
        }
        // The last function whose entry is at or below pc.
        let (mut lo, mut hi) = (0, self.nfunc);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid)? <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let entry = self.entry(lo)?;
        let funcoff = usize::try_from(self.functab(2 * lo + 1)?).ok()?;
        // The _func record: [entry], nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata,
        // cuOffset, ... with `entry` a pointer before Go 1.18 and a 32-bit offset since.
        let func = self.functab.checked_add(funcoff)?;
        let base = func.checked_add(match self.layout {
            Layout::Go116 => self.ptr_size,
            Layout::Go118 => 4,
        })?;
        let field = |i: usize| u32_at(self.data, base.checked_add(4 * i)?);
        let name_off = usize::try_from(field(0)?).ok()?;
        let name = cstr_at(self.data, self.funcname.checked_add(name_off)?)?.to_owned();
        let (pcfile, pcln, cu) = (field(4)?, field(5)?, field(7)?);
        let file = self.pcvalue(pcfile, entry, pc).and_then(|index| {
            let index = usize::try_from(index).ok()?;
            let slot = self
                .cutab
                .checked_add((usize::try_from(cu).ok()?.checked_add(index)?).checked_mul(4)?)?;
            let file_off = u32_at(self.data, slot)?;
            if file_off == u32::MAX {
                return None;
            }
            let at = self.filetab.checked_add(usize::try_from(file_off).ok()?)?;
            cstr_at(self.data, at).map(str::to_owned)
        });
        let line = self
            .pcvalue(pcln, entry, pc)
            .and_then(|l| u32::try_from(l).ok())
            .filter(|&l| l > 0);
        Some(GoFunction {
            name,
            entry,
            file,
            line,
        })
    }

    /// The value of the pc-value table at `offset` (from `pctab`) for `pc` in the function
    /// starting at `entry`: pairs of (zig-zag value delta, pc delta / quantum) varints.
    fn pcvalue(&self, offset: u32, entry: u64, pc: u64) -> Option<i64> {
        if offset == 0 {
            return None;
        }
        let mut pos = self.pctab.checked_add(usize::try_from(offset).ok()?)?;
        let mut value: i64 = -1;
        let mut current = entry;
        let mut first = true;
        loop {
            let raw = uvarint(self.data, &mut pos)?;
            if raw == 0 && !first {
                return None;
            }
            first = false;
            let delta = if raw & 1 != 0 {
                -(i64::from(raw >> 1)) - 1
            } else {
                i64::from(raw >> 1)
            };
            value += delta;
            let step = uvarint(self.data, &mut pos)?;
            current = current.checked_add(u64::from(step) * u64::from(self.quantum))?;
            if pc < current {
                return Some(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a Go 1.18-layout table with two functions for the parser tests.
    fn synthetic() -> Vec<u8> {
        let mut t = vec![0u8; 8 + 8 * 8];
        t[..4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        t[6] = 1; // quantum
        t[7] = 8; // pointer size
        let header = |t: &mut Vec<u8>, i: usize, v: u64| {
            t[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes())
        };
        // Sections appended after the 72-byte header.
        let funcname = t.len();
        t.extend_from_slice(b"main.alpha\0main.beta\0");
        let cutab = t.len();
        t.extend_from_slice(&0u32.to_le_bytes());
        let filetab = t.len();
        t.extend_from_slice(b"/src/main.go\0");
        let pctab = t.len();
        t.push(0); // offset 0 means "no table"
        // pcfile: value 0 for the whole function (delta +1 from -1 → raw 2), 0x40 bytes.
        let pcfile = t.len() - pctab;
        t.extend_from_slice(&[2, 0x40, 0]);
        // pcln: line 10 for 0x10 bytes, then line 12 for 0x30 bytes.
        let pcln = t.len() - pctab;
        t.extend_from_slice(&[22, 0x10, 4, 0x30, 0]);
        let functab = t.len();
        let funcs_at = 5 * 4;
        let func_size = 4 * 10;
        for (i, entry) in [0u32, 0x40, 0x80].iter().enumerate() {
            t.extend_from_slice(&entry.to_le_bytes());
            if i < 2 {
                t.extend_from_slice(&((funcs_at + i * func_size) as u32).to_le_bytes());
            }
        }
        for (name_off, file, line) in [(0u32, pcfile, pcln), (11, 0, 0)] {
            t.extend_from_slice(&0u32.to_le_bytes()); // entryOff
            for v in [name_off, 0, 0, 0, file as u32, line as u32, 0, 0, 0] {
                t.extend_from_slice(&v.to_le_bytes());
            }
        }
        for (i, v) in [
            2u64,
            1,
            0x401000,
            funcname as u64,
            cutab as u64,
            filetab as u64,
        ]
        .into_iter()
        .chain([pctab as u64, functab as u64])
        .enumerate()
        {
            header(&mut t, i, v);
        }
        t
    }

    /// Check that names, files and lines come out of a Go 1.18-layout table: the right function
    /// for addresses at, inside and past entries, line changes within a function, and nothing
    /// outside the text range.
    #[test]
    fn lookup_in_synthetic_table() {
        let data = synthetic();
        let table = Pclntab::parse(&data, 0).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.text(), Some(0x401000..0x401080));
        let f = table.lookup(0x401000).unwrap();
        assert_eq!(
            (f.name.as_str(), f.file.as_deref(), f.line),
            ("main.alpha", Some("/src/main.go"), Some(10))
        );
        assert_eq!(table.lookup(0x401020).unwrap().line, Some(12));
        let b = table.lookup(0x401041).unwrap();
        assert_eq!(
            (b.name.as_str(), b.entry, b.line),
            ("main.beta", 0x401040, None)
        );
        assert_eq!(table.lookup(0x401080), None);
        assert_eq!(table.lookup(0x400fff), None);
    }

    /// Check that old, foreign and truncated tables are refused instead of misread.
    #[test]
    fn refuses_unknown_and_truncated_tables() {
        assert_eq!(
            Pclntab::parse(&0xffff_fffbu32.to_le_bytes(), 0).unwrap_err(),
            PclntabError::Version(0xffff_fffb)
        );
        let data = synthetic();
        assert_eq!(
            Pclntab::parse(&data[..80], 0).unwrap_err(),
            PclntabError::Malformed
        );
        assert_eq!(Pclntab::parse(&[], 0).unwrap_err(), PclntabError::Malformed);
    }
}
