//! One ELF file seen by the Python introspection: the shared [`ElfImage`] (function symbols,
//! file offsets, code bytes) plus what only this module needs — data symbols, sections,
//! dynamic relocations (PLT/GOT names, `R_X86_64_RELATIVE` values) and functions by address.

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, OpKind, Register};
use object::{
    Object as _, ObjectKind, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _,
    ObjectSymbolTable as _, RelocationFlags, RelocationTarget, SymbolKind, elf,
};

use super::PyError;
use crate::elf::{ElfImage, FunctionSymbol};

/// A symbol of any kind (function or data), from `.symtab` or `.dynsym`.
#[derive(Clone, Debug)]
pub(crate) struct DataSymbol {
    pub name: String,
    pub address: u64,
}

/// A section header, for the few sections read by name.
#[derive(Clone, Debug)]
pub(crate) struct SectionInfo {
    pub name: String,
    pub address: u64,
    pub file_range: Option<(u64, u64)>,
    /// `SHF_COMPRESSED` (compressed debug sections are not decompressed here).
    pub compressed: bool,
}

pub(crate) struct Binary {
    pub image: ElfImage,
    data: Vec<u8>,
    /// `ET_DYN` without `PT_INTERP`: a shared library.
    pub shared_library: bool,
    pub x86_64: bool,
    /// Defined data (`STT_OBJECT`) symbols, sorted by name.
    objects: Vec<DataSymbol>,
    /// Function symbols sorted by address (ties: the first name).
    by_address: Vec<FunctionSymbol>,
    pub sections: Vec<SectionInfo>,
    /// GOT slot address → imported or exported symbol name (`JUMP_SLOT`, `GLOB_DAT`).
    got_names: HashMap<u64, String>,
    /// Address → value written by the dynamic loader (`R_X86_64_RELATIVE` addend).
    relative: HashMap<u64, u64>,
    /// Executable address ranges (from the PT_LOAD segments).
    exec_ranges: Vec<(u64, u64)>,
    /// Names of the functions defined in `.dynsym` (exported).
    exported: HashSet<String>,
    /// Function ranges `(start, length)` from `.eh_frame` FDEs, sorted: exact bounds for
    /// functions without a symbol (stripped files).
    fde_ranges: Vec<(u64, u64)>,
}

impl Binary {
    pub fn open(path: &Path) -> Result<Binary, PyError> {
        let image = ElfImage::open(path)?;
        let data = fs::read(path).map_err(|source| PyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = object::File::parse(&*data).map_err(|source| PyError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let x86_64 = file.architecture() == object::Architecture::X86_64;
        let has_interp = match &file {
            object::File::Elf64(elf_file) => {
                use object::read::elf::ProgramHeader as _;
                let endian = elf_file.endian();
                elf_file
                    .elf_program_headers()
                    .iter()
                    .any(|ph| ph.p_type(endian) == elf::PT_INTERP)
            }
            _ => false,
        };
        let shared_library = file.kind() == ObjectKind::Dynamic && !has_interp;

        let mut objects: Vec<DataSymbol> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Data && s.is_definition())
            .filter_map(|s| {
                Some(DataSymbol {
                    name: s.name().ok()?.to_owned(),
                    address: s.address(),
                })
            })
            .collect();
        objects.sort_by(|a, b| (&a.name, a.address).cmp(&(&b.name, b.address)));
        objects.dedup_by(|a, b| a.name == b.name && a.address == b.address);

        let mut by_address: Vec<FunctionSymbol> = image.function_symbols().to_vec();
        by_address.sort_by(|a, b| (a.address, &a.name).cmp(&(b.address, &b.name)));

        let sections = file
            .sections()
            .filter_map(|s| {
                let compressed = matches!(
                    s.flags(),
                    object::SectionFlags::Elf { sh_flags } if sh_flags & u64::from(elf::SHF_COMPRESSED) != 0
                );
                Some(SectionInfo {
                    name: s.name().ok()?.to_owned(),
                    address: s.address(),
                    file_range: s.file_range(),
                    compressed,
                })
            })
            .collect();

        let mut got_names = HashMap::new();
        let mut relative = HashMap::new();
        if let Some(relocations) = file.dynamic_relocations() {
            let dynsym = file.dynamic_symbol_table();
            for (address, reloc) in relocations {
                let RelocationFlags::Elf { r_type } = reloc.flags() else {
                    continue;
                };
                match r_type {
                    elf::R_X86_64_RELATIVE => {
                        // Addends of R_X86_64_RELATIVE are addresses (non-negative).
                        if let Ok(value) = u64::try_from(reloc.addend()) {
                            relative.insert(address, value);
                        }
                    }
                    elf::R_X86_64_JUMP_SLOT | elf::R_X86_64_GLOB_DAT => {
                        if let (RelocationTarget::Symbol(index), Some(table)) =
                            (reloc.target(), dynsym.as_ref())
                            && let Ok(symbol) = table.symbol_by_index(index)
                            && let Ok(name) = symbol.name()
                        {
                            got_names.insert(address, name.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        }

        let exported = file
            .dynamic_symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect();
        let exec_ranges = file
            .segments()
            .filter(|seg| {
                matches!(seg.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & elf::PF_X != 0)
            })
            .map(|seg| (seg.address(), seg.address() + seg.size()))
            .collect();

        Ok(Binary {
            image,
            data,
            shared_library,
            x86_64,
            objects,
            by_address,
            sections,
            got_names,
            relative,
            exec_ranges,
            exported,
            fde_ranges: Vec::new(),
        }
        .with_fde_ranges())
    }

    fn with_fde_ranges(mut self) -> Binary {
        use gimli::UnwindSection as _;
        let (Some(section), Some(data)) =
            (self.section(".eh_frame"), self.section_data(".eh_frame"))
        else {
            return self;
        };
        let eh_frame = gimli::EhFrame::new(data, gimli::LittleEndian);
        let mut bases = gimli::BaseAddresses::default().set_eh_frame(section.address);
        if let Some(text) = self.section(".text") {
            bases = bases.set_text(text.address);
        }
        let mut ranges = Vec::new();
        let mut entries = eh_frame.entries(&bases);
        while let Ok(Some(entry)) = entries.next() {
            if let gimli::CieOrFde::Fde(partial) = entry
                && let Ok(fde) = partial.parse(gimli::EhFrame::cie_from_offset)
                && fde.len() > 0
            {
                ranges.push((fde.initial_address(), fde.len()));
            }
        }
        ranges.sort_unstable();
        self.fde_ranges = ranges;
        self
    }

    /// The `.eh_frame` range starting exactly at `address`: its length.
    fn fde_length_at(&self, address: u64) -> Option<u64> {
        let i = self
            .fde_ranges
            .partition_point(|&(start, _)| start < address);
        self.fde_ranges
            .get(i)
            .filter(|&&(start, _)| start == address)
            .map(|&(_, len)| len)
    }

    pub fn path(&self) -> &Path {
        self.image.path()
    }

    pub fn path_buf(&self) -> PathBuf {
        self.image.path().to_owned()
    }

    /// All function symbols with this exact name.
    pub fn functions_named(&self, name: &str) -> Vec<&FunctionSymbol> {
        let symbols = self.image.function_symbols();
        let start = symbols.partition_point(|s| s.name.as_str() < name);
        symbols[start..]
            .iter()
            .take_while(|s| s.name == name)
            .collect()
    }

    /// The function symbol with this name (the first address when several).
    pub fn function(&self, name: &str) -> Option<&FunctionSymbol> {
        self.functions_named(name).into_iter().next()
    }

    /// A defined data symbol.
    pub fn object(&self, name: &str) -> Option<&DataSymbol> {
        let start = self.objects.partition_point(|s| s.name.as_str() < name);
        self.objects.get(start).filter(|s| s.name == name)
    }

    /// The function symbol starting exactly at `address`.
    pub fn function_at(&self, address: u64) -> Option<&FunctionSymbol> {
        let start = self.by_address.partition_point(|s| s.address < address);
        self.by_address.get(start).filter(|s| s.address == address)
    }

    /// The function symbol whose range contains `address` (the nearest one before it when
    /// sizes are unknown).
    pub fn function_containing(&self, address: u64) -> Option<&FunctionSymbol> {
        let end = self.by_address.partition_point(|s| s.address <= address);
        let sym = self.by_address.get(end.checked_sub(1)?)?;
        (sym.size == 0 || address < sym.address.saturating_add(sym.size)).then_some(sym)
    }

    /// Address of the first function symbol after `address` (bounds a function whose own
    /// symbol is missing, as in a stripped file).
    pub fn next_function_after(&self, address: u64) -> Option<u64> {
        let start = self.by_address.partition_point(|s| s.address <= address);
        self.by_address.get(start).map(|s| s.address)
    }

    /// Whether a function of this name is exported (`.dynsym`).
    pub fn is_exported(&self, name: &str) -> bool {
        self.exported.contains(name)
    }

    pub fn section(&self, name: &str) -> Option<&SectionInfo> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The bytes of a section as stored in the file (None for NOBITS or missing).
    pub fn section_data(&self, name: &str) -> Option<&[u8]> {
        let (offset, size) = self.section(name)?.file_range?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        self.data.get(start..end)
    }

    /// Whole file contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn is_executable_address(&self, address: u64) -> bool {
        self.exec_ranges
            .iter()
            .any(|&(start, end)| address >= start && address < end)
    }

    /// The pointer-sized value the loader leaves at `address`: the relocated value for
    /// `R_X86_64_RELATIVE` slots (position-independent files), else the file's bytes.
    pub fn pointer_at(&self, address: u64) -> Option<u64> {
        if let Some(&value) = self.relative.get(&address) {
            return Some(value);
        }
        let bytes = self.image.bytes_at(address, 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// A NUL-terminated string at `address` (at most 256 bytes, UTF-8).
    pub fn c_string_at(&self, address: u64) -> Option<&str> {
        let bytes = self.image.bytes_at(address, 256)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    }

    /// The code of the function at `address`: its symbol's size when known, else its
    /// `.eh_frame` range, else up to the next known symbol (at most `max` bytes).
    pub fn function_code(&self, address: u64, size: u64, max: u64) -> Option<&[u8]> {
        let len = if size > 0 {
            size
        } else if let Some(len) = self.fde_length_at(address) {
            len
        } else {
            self.next_function_after(address)
                .map_or(max, |next| (next - address).min(max))
        };
        // Symbol sizes come from the file: bound them (no function is 16 MiB).
        self.image.bytes_at(address, len.clamp(1, 1 << 24))
    }

    /// Decoded instructions of `code` starting at `address`.
    pub fn decode(code: &[u8], address: u64) -> Vec<Instruction> {
        Decoder::with_ip(64, code, address, DecoderOptions::NONE)
            .into_iter()
            .take_while(|i| !i.is_invalid())
            .collect()
    }

    /// The data addresses that `instructions` (straight-line code of one function) access:
    /// RIP-relative operands, and `[reg+disp]` operands whose base register was loaded from a
    /// GOT slot of a symbol defined in this file (`mov rax,[rip+GOT(_PyRuntime)]; mov rdi,
    /// [rax+0x310]` in 3.13's shared library). Returns `(instruction address, data address)`.
    pub fn data_addresses(&self, instructions: &[Instruction]) -> Vec<(u64, u64)> {
        let mut from_got: HashMap<Register, u64> = HashMap::new();
        let mut out = Vec::new();
        for instr in instructions {
            let has_memory = (0..instr.op_count()).any(|i| instr.op_kind(i) == OpKind::Memory);
            if has_memory {
                let base = instr.memory_base();
                if base == Register::RIP {
                    out.push((instr.ip(), instr.ip_rel_memory_address()));
                } else if let Some(&symbol) = from_got.get(&base.full_register())
                    && instr.memory_index() == Register::None
                {
                    out.push((
                        instr.ip(),
                        symbol.wrapping_add(instr.memory_displacement64()),
                    ));
                }
            }
            // Track `mov reg, [rip+GOT]` of a locally defined data symbol; forget registers
            // written otherwise.
            if instr.op_count() == 2 && instr.op0_kind() == OpKind::Register {
                let dest = instr.op0_register().full_register();
                let got_symbol = (instr.mnemonic() == iced_x86::Mnemonic::Mov
                    && instr.op1_kind() == OpKind::Memory
                    && instr.memory_base() == Register::RIP)
                    .then(|| self.got_names.get(&instr.ip_rel_memory_address()))
                    .flatten()
                    .and_then(|name| self.object(name))
                    .map(|sym| sym.address);
                match got_symbol {
                    Some(address) => {
                        from_got.insert(dest, address);
                    }
                    None => {
                        from_got.remove(&dest);
                    }
                }
            }
        }
        out
    }

    /// If `address` is a PLT stub (`jmp [rip+GOT]`, possibly after `endbr64`), the name of the
    /// symbol its GOT slot is relocated against.
    pub fn plt_target(&self, address: u64) -> Option<&str> {
        let code = self.image.bytes_at(address, 16)?;
        let first_jump = Self::decode(code, address)
            .into_iter()
            .take(2)
            .find(|i| i.flow_control() == FlowControl::IndirectBranch)?;
        if first_jump.op0_kind() == OpKind::Memory && first_jump.memory_base() == Register::RIP {
            self.got_names
                .get(&first_jump.ip_rel_memory_address())
                .map(String::as_str)
        } else {
            None
        }
    }
}
