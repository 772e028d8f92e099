//! ELF files on disk: function symbols, file offsets, code bytes, build ids.
//!
//! Symbols come from both `.symtab` and `.dynsym`, so a statically linked binary (whose
//! allocator is only in `.symtab`) and a stripped shared library (only `.dynsym`) both work.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not an ELF file", path.display())]
    NotElf { path: PathBuf },
    #[error("{} is not a valid ELF file", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
}

/// A function symbol defined in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSymbol {
    pub name: String,
    /// Virtual address in the file (its `st_value`).
    pub address: u64,
    pub size: u64,
}

/// A PT_LOAD segment: where file bytes appear in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    address: u64,
    file_offset: u64,
    file_size: u64,
}

/// An ELF file read into memory, with what alloctrace needs from it extracted once.
pub struct ElfImage {
    path: PathBuf,
    data: Vec<u8>,
    segments: Vec<Segment>,
    symbols: Vec<FunctionSymbol>,
    has_symtab: bool,
    build_id: Option<String>,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Whether `path` starts with the ELF magic (cheap check before reading the whole file).
pub fn is_elf(path: &Path) -> io::Result<bool> {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    let mut file = fs::File::open(path)?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == ELF_MAGIC)
}

impl ElfImage {
    pub fn open(path: &Path) -> Result<ElfImage, ElfError> {
        let data = fs::read(path).map_err(|source| ElfError::Read {
            path: path.to_owned(),
            source,
        })?;
        if !data.starts_with(ELF_MAGIC) {
            return Err(ElfError::NotElf {
                path: path.to_owned(),
            });
        }
        let file = object::File::parse(&*data).map_err(|source| ElfError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let segments = file
            .segments()
            .map(|seg| {
                let (file_offset, file_size) = seg.file_range();
                Segment {
                    address: seg.address(),
                    file_offset,
                    file_size,
                }
            })
            .collect();
        let mut symbols: Vec<FunctionSymbol> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
            .filter_map(|s| {
                Some(FunctionSymbol {
                    name: s.name().ok()?.to_owned(),
                    address: s.address(),
                    size: s.size(),
                })
            })
            .collect();
        symbols.sort_by(|a, b| (&a.name, a.address).cmp(&(&b.name, b.address)));
        symbols.dedup_by(|a, b| a.name == b.name && a.address == b.address);
        let has_symtab = file.symbols().next().is_some();
        let build_id = file
            .build_id()
            .ok()
            .flatten()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
        Ok(ElfImage {
            path: path.to_owned(),
            data,
            segments,
            symbols,
            has_symtab,
            build_id,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Defined function symbols from `.symtab` and `.dynsym`, deduplicated by (name, address),
    /// sorted by name.
    pub fn function_symbols(&self) -> &[FunctionSymbol] {
        &self.symbols
    }

    /// Whether the file still has its full symbol table (`.symtab`).
    pub fn has_symtab(&self) -> bool {
        self.has_symtab
    }

    fn segment_of(&self, address: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|seg| address >= seg.address && address < seg.address + seg.file_size)
    }

    /// File offset of a virtual address, through the PT_LOAD segment that maps it; this is the
    /// offset a uprobe is attached at.
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segment_of(address)
            .map(|seg| address - seg.address + seg.file_offset)
    }

    /// The virtual address a file offset is loaded at (inverse of [`Self::file_offset`]).
    pub fn address_of(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|seg| {
                file_offset >= seg.file_offset && file_offset < seg.file_offset + seg.file_size
            })
            .map(|seg| file_offset - seg.file_offset + seg.address)
    }

    /// Up to `len` bytes of the file mapped at `address` (fewer at the end of its segment).
    pub fn bytes_at(&self, address: u64, len: u64) -> Option<&[u8]> {
        let seg = self.segment_of(address)?;
        let start = address - seg.address + seg.file_offset;
        let end = (start + len).min(seg.file_offset + seg.file_size);
        self.data
            .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }

    /// The GNU build id, hex-encoded.
    pub fn build_id(&self) -> Option<&str> {
        self.build_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that glibc's malloc is found with a file offset inside the file, and that its
    /// code bytes are readable.
    #[test]
    fn finds_malloc_in_libc() {
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        let image = ElfImage::open(libc).unwrap();
        let malloc = image
            .function_symbols()
            .iter()
            .find(|s| s.name == "malloc")
            .unwrap();
        let offset = image.file_offset(malloc.address).unwrap();
        assert!(offset < fs::metadata(libc).unwrap().len());
        assert_eq!(image.bytes_at(malloc.address, 16).unwrap().len(), 16);
        assert!(image.build_id().is_some());
    }

    /// Check that a non-ELF file is rejected with a clear error, not a panic.
    #[test]
    fn rejects_non_elf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script.sh");
        fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(
            ElfImage::open(&path),
            Err(ElfError::NotElf { .. })
        ));
        assert!(!is_elf(&path).unwrap());
    }

    /// Check that a truncated ELF is an error, not a panic.
    #[test]
    fn rejects_truncated_elf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trunc");
        let bytes = fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        fs::write(&path, &bytes[..100]).unwrap();
        assert!(ElfImage::open(&path).is_err());
    }
}
