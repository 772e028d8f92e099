//! The raw ELF file under a Go binary: sections, all symbols (data too), and little-endian reads
//! at link-time virtual addresses.
//!
//! Code bytes and addresses go through [`ElfImage`] (PT_LOAD segments), so a read at an address
//! sees exactly what is mapped there. Go's linker writes link-time values into pointer words
//! even where a PIE also carries an `R_X86_64_RELATIVE` relocation for them (checked on Go 1.19
//! and 1.27 `-buildmode=pie` binaries: `.go.module`'s first word holds the `.gopclntab` address
//! and the relocation's addend is the same), so pointers are read from the file as they are.

use std::{collections::HashMap, path::Path};

use object::{
    Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _, SegmentFlags,
};

use super::GoError;
use crate::elf::ElfImage;

/// One ELF section, by link-time address.
#[derive(Clone, Debug)]
pub(super) struct Section {
    pub name: String,
    pub address: u64,
    pub size: u64,
}

/// A file-backed PT_LOAD segment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub address: u64,
    pub file_size: u64,
    pub writable: bool,
    pub executable: bool,
}

/// A symbol of any kind from `.symtab`/`.dynsym`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Symbol {
    pub address: u64,
    pub size: u64,
}

pub(super) struct GoFile {
    pub elf: ElfImage,
    /// The whole file (DWARF sections are not mapped, so they are read from here).
    pub data: Vec<u8>,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
    /// Every named, defined symbol (functions and data), first definition wins.
    pub symbols: HashMap<String, Symbol>,
    pub pie: bool,
    pub has_symtab: bool,
}

impl GoFile {
    /// `Ok(None)` for a file that is not ELF at all.
    pub fn open(path: &Path) -> Result<Option<GoFile>, GoError> {
        let elf = match ElfImage::open(path) {
            Ok(elf) => elf,
            Err(crate::elf::ElfError::NotElf { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let data = std::fs::read(path).map_err(|source| GoError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = object::File::parse(&*data).map_err(|source| GoError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(GoError::UnsupportedArchitecture {
                path: path.to_owned(),
                architecture: format!("{:?}", file.architecture()),
            });
        }
        let sections = file
            .sections()
            .filter_map(|s| {
                Some(Section {
                    name: s.name().ok()?.to_owned(),
                    address: s.address(),
                    size: s.size(),
                })
            })
            .collect();
        let segments = file
            .segments()
            .map(|seg| {
                let (_, file_size) = seg.file_range();
                let (writable, executable) = match seg.flags() {
                    SegmentFlags::Elf { p_flags } => (
                        p_flags & object::elf::PF_W != 0,
                        p_flags & object::elf::PF_X != 0,
                    ),
                    _ => (false, false),
                };
                Segment {
                    address: seg.address(),
                    file_size,
                    writable,
                    executable,
                }
            })
            .collect();
        let mut symbols = HashMap::new();
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            if sym.section_index().is_none() || sym.address() == 0 {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            symbols.entry(name.to_owned()).or_insert(Symbol {
                address: sym.address(),
                size: sym.size(),
            });
        }
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let has_symtab = elf.has_symtab();
        Ok(Some(GoFile {
            elf,
            data,
            sections,
            segments,
            symbols,
            pie,
            has_symtab,
        }))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The section called `name`, or one whose name ends in it (a PIE has
    /// `.data.rel.ro.go.type` where an executable has `.go.type`).
    pub fn section_like(&self, name: &str) -> Option<&Section> {
        self.section(name)
            .or_else(|| self.sections.iter().find(|s| s.name.ends_with(name)))
    }

    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        self.symbols.get(name).copied()
    }

    /// `address + offset`, or `None` on overflow (addresses come from the file).
    pub fn at(address: u64, offset: u64) -> Option<u64> {
        address.checked_add(offset)
    }

    /// Exactly `len` bytes mapped at `address`, or `None`.
    pub fn read(&self, address: u64, len: u64) -> Option<&[u8]> {
        self.elf
            .bytes_at(address, len)
            .filter(|b| b.len() as u64 == len)
    }

    pub fn read_u8(&self, address: u64) -> Option<u8> {
        self.read(address, 1).and_then(|b| b.first().copied())
    }

    pub fn read_u32(&self, address: u64) -> Option<u32> {
        let b = self.read(address, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    pub fn read_u64(&self, address: u64) -> Option<u64> {
        let b = self.read(address, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// A Go string header `{ptr, len}` at `address`, and its bytes.
    pub fn read_go_string(&self, address: u64) -> Option<String> {
        let ptr = self.read_u64(address)?;
        let len = self.read_u64(address.checked_add(8)?)?;
        if len > 1 << 20 {
            return None;
        }
        let bytes = self.read(ptr, len)?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    /// The file-backed segment holding `address`.
    pub fn segment_of(&self, address: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| address >= s.address && address < s.address.saturating_add(s.file_size))
    }

    /// The bytes of a section as stored in the file (for unmapped sections such as DWARF).
    pub fn section_file_data(&self, name: &str) -> Option<SectionBytes<'_>> {
        let file = object::File::parse(&*self.data).ok()?;
        let section = file.section_by_name(name)?;
        let compressed = section.compressed_data().ok()?;
        Some(SectionBytes {
            format: compressed.format,
            data: compressed.data,
            uncompressed_size: compressed.uncompressed_size,
        })
    }
}

/// A section's stored bytes, possibly compressed.
pub(super) struct SectionBytes<'a> {
    pub format: object::CompressionFormat,
    pub data: &'a [u8],
    pub uncompressed_size: u64,
}
