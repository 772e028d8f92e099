//! One module file on disk: is it the file that was mapped (build id), where does a file
//! offset land in its address space, where are its symbols (the file, a separate debug file
//! found by build id, Go's `.gopclntab`), and what is at each address.

use std::{
    fs,
    path::{Path, PathBuf},
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer,
    source::{Elf, Source},
};
use object::{Object, ObjectSection, ObjectSegment};

use super::{Status, gopclntab::Pclntab};

/// What was found at one address: the frames innermost first (inlined callees, then the
/// function that holds the code), or why there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    Frames(Vec<Frame>),
    Unresolved(Status),
}

/// One function at an address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// A module file, checked and ready to answer.
pub struct ModuleFile {
    /// Why nothing in this file can be symbolized (missing, or not the mapped file).
    unusable: Option<Status>,
    /// Build id of the file on disk (hex).
    pub found_build_id: Option<String>,
    /// (file offset, virtual address, size) of every PT_LOAD segment.
    loads: Vec<(u64, u64, u64)>,
    /// Where ELF symbols and DWARF are read: the file or its separate debug file.
    pub symbol_source: PathBuf,
    pub debug_file: Option<PathBuf>,
    /// The file, or its debug file, has `.symtab` or DWARF.
    has_symbols: bool,
    has_dwarf: bool,
    /// `.gopclntab` bytes and the `.text` address, for Go binaries without DWARF.
    go: Option<(Vec<u8>, u64)>,
}

/// The build id of `file` as lowercase hex.
fn build_id(file: &object::File<'_>) -> Option<String> {
    file.build_id()
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
}

fn has_dwarf(file: &object::File<'_>) -> bool {
    [".debug_info", ".zdebug_info"]
        .iter()
        .any(|name| file.section_by_name(name).is_some_and(|s| s.size() > 0))
}

fn has_symtab(file: &object::File<'_>) -> bool {
    file.symbols().next().is_some()
}

/// A separate debug file and what it holds.
struct DebugFile {
    path: PathBuf,
    has_symtab: bool,
    has_dwarf: bool,
}

/// `<dir>/.build-id/ab/cdef….debug` for the first of `debug_dirs` that has it and whose own
/// build id matches (a stale debug file is worse than none).
fn find_debug_file(build_id: &str, debug_dirs: &[PathBuf]) -> Option<DebugFile> {
    // Hex from our own formatting; anything else cannot be split into a path safely.
    if build_id.len() < 4 || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (head, tail) = build_id.split_at(2);
    debug_dirs.iter().find_map(|dir| {
        let path = dir
            .join(".build-id")
            .join(head)
            .join(format!("{tail}.debug"));
        let data = fs::read(&path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        (self::build_id(&file).as_deref() == Some(build_id)).then(|| DebugFile {
            has_symtab: has_symtab(&file),
            has_dwarf: has_dwarf(&file),
            path,
        })
    })
}

impl ModuleFile {
    /// Opens `path` and checks it against the build id recorded when it was mapped. A file
    /// without a recorded build id is accepted only if it has none either (Go binaries carry
    /// only a Go build id): there is nothing to compare, and its path is all that was known.
    pub fn open(
        path: &Path,
        expected_build_id: Option<&str>,
        debug_dirs: &[PathBuf],
    ) -> ModuleFile {
        let mut module = ModuleFile {
            unusable: None,
            found_build_id: None,
            loads: Vec::new(),
            symbol_source: path.to_owned(),
            debug_file: None,
            has_symbols: false,
            has_dwarf: false,
            go: None,
        };
        // A file replaced while mapped shows as "path (deleted)" in /proc/PID/maps.
        let Ok(data) = fs::read(path) else {
            module.unusable = Some(Status::MissingFile);
            return module;
        };
        let Ok(file) = object::File::parse(&*data) else {
            module.unusable = Some(Status::MissingFile);
            return module;
        };
        module.found_build_id = build_id(&file);
        if module.found_build_id.as_deref() != expected_build_id {
            module.unusable = Some(Status::BuildIdMismatch);
            return module;
        }
        module.loads = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        module.has_symbols = has_symtab(&file);
        module.has_dwarf = has_dwarf(&file);
        if let Some(id) = &module.found_build_id
            && let Some(debug) = find_debug_file(id, debug_dirs)
        {
            // The debug file has the full .symtab and the DWARF the installed file lost.
            module.has_symbols |= debug.has_symtab;
            module.has_dwarf |= debug.has_dwarf;
            module.symbol_source = debug.path.clone();
            module.debug_file = Some(debug.path);
        }
        if !module.has_dwarf
            && let Some(section) = file.section_by_name(".gopclntab")
            && let Ok(bytes) = section.data()
        {
            let text = file.section_by_name(".text").map_or(0, |s| s.address());
            module.go = Some((bytes.to_vec(), text));
        }
        module
    }

    /// Why nothing in this file can be symbolized, if so.
    pub fn unusable(&self) -> Option<Status> {
        self.unusable
    }

    /// The link-time address of file offset `offset`, through the PT_LOAD segments.
    pub fn virtual_address(&self, offset: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|(start, _, size)| (*start..start.saturating_add(*size)).contains(&offset))
            .map(|(start, vaddr, _)| vaddr + (offset - start))
    }

    /// Symbolizes the file offsets `offsets` (already adjusted for return addresses).
    pub fn resolve(&self, symbolizer: &Symbolizer, offsets: &[u64]) -> Vec<Resolved> {
        if let Some(status) = self.unusable {
            return vec![Resolved::Unresolved(status); offsets.len()];
        }
        let missing = if self.has_symbols || self.has_dwarf || self.go.is_some() {
            Status::NoSymbols
        } else {
            Status::Stripped
        };
        let vaddrs: Vec<Option<u64>> = offsets.iter().map(|&o| self.virtual_address(o)).collect();
        let go = self
            .go
            .as_ref()
            .and_then(|(bytes, text)| Pclntab::parse(bytes, *text).ok());
        // blazesym answers the addresses Go's table does not know (C code in cgo binaries).
        let mut out: Vec<Option<Resolved>> = vaddrs
            .iter()
            .map(|vaddr| {
                let function = go.as_ref()?.lookup((*vaddr)?)?;
                Some(Resolved::Frames(vec![Frame {
                    function: function.name,
                    file: function.file,
                    line: function.line,
                    column: None,
                }]))
            })
            .collect();
        let pending: Vec<(usize, u64)> = out
            .iter()
            .zip(&vaddrs)
            .enumerate()
            .filter(|(_, (done, _))| done.is_none())
            .filter_map(|(i, (_, vaddr))| Some((i, (*vaddr)?)))
            .collect();
        if !pending.is_empty() {
            let addrs: Vec<u64> = pending.iter().map(|(_, a)| *a).collect();
            let source = Source::Elf(Elf::new(&self.symbol_source));
            // An unreadable symbol source leaves every address unresolved, and so does a
            // parser that panics on a malformed file: one bad file must not end the run.
            let results = trace_format::guard::catch(|| {
                symbolizer.symbolize(&source, Input::VirtOffset(addrs.as_slice()))
            })
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
            for ((i, _), result) in pending.iter().zip(results) {
                if let Symbolized::Sym(sym) = result {
                    out[*i] = Some(Resolved::Frames(frames(&sym)));
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Resolved::Unresolved(missing)))
            .collect()
    }
}

fn code_location(
    info: Option<&blazesym::symbolize::CodeInfo<'_>>,
) -> (Option<String>, Option<u32>, Option<u32>) {
    match info {
        Some(info) => (
            Some(info.to_path().to_string_lossy().into_owned()),
            info.line,
            info.column.map(u32::from),
        ),
        None => (None, None, None),
    }
}

/// blazesym lists inlined functions outermost first, each with the location of the next call
/// (the last with the address's own location), and the containing function with the location
/// of the first inlined call: reversed, that is innermost first.
fn frames(sym: &blazesym::symbolize::Sym<'_>) -> Vec<Frame> {
    let mut frames: Vec<Frame> = sym
        .inlined
        .iter()
        .rev()
        .map(|f| {
            let (file, line, column) = code_location(f.code_info.as_ref());
            Frame {
                function: f.name.to_string(),
                file,
                line,
                column,
            }
        })
        .collect();
    let (file, line, column) = code_location(sym.code_info.as_deref());
    frames.push(Frame {
        function: sym.name.to_string(),
        file,
        line,
        column,
    });
    frames
}
