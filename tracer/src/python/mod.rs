//! CPython introspection: find the interpreter in a process's files, and tell the tracer where
//! Python's allocators, arenas, USDT probes and garbage-collection points are.
//!
//! Pure user space: everything comes from the ELF files (symbols, disassembly, `.note.stapsdt`,
//! DWARF when present). Nothing here attaches a probe; naming Python frames ([`code`]) reads a
//! process's memory only through the caller's [`code::Memory`].
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! let exe = Path::new("/root/.pyenv/versions/3.11.7/bin/python3.11");
//! let libs = [PathBuf::from("/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0")];
//! let py = alloctrace::python::PythonRuntime::detect(exe, &libs).unwrap().unwrap();
//! for probe in py.allocator_probes() {
//!     println!("{} {} {:?} at {}", probe.func, probe.domain.as_str(), probe.kind,
//!              probe.placement.describe());
//! }
//! ```
//!
//! # The allocator layers and how they nest
//!
//! CPython routes every allocation through one of three *domains*, each a table of function
//! pointers (`PyMemAllocatorEx {ctx, malloc, calloc, realloc, free}`) that the public functions
//! call through:
//!
//! | public function ([`Layer::Api`]) | table | default 3.6–3.13 (pymalloc build) | `PYTHONMALLOC=malloc` |
//! | --- | --- | --- | --- |
//! | `PyObject_Malloc/Calloc/Realloc/Free` (domain `obj`) | `_PyObject` | `_PyObject_Malloc/...` (pymalloc) | `_PyMem_RawMalloc/...` |
//! | `PyMem_Malloc/Calloc/Realloc/Free` (domain `mem`) | `_PyMem` | `_PyObject_Malloc/...` too (pymalloc serves the mem domain since 3.6) | `_PyMem_RawMalloc/...` |
//! | `PyMem_RawMalloc/...` (domain `raw`) | `_PyMem_Raw` | `_PyMem_RawMalloc/...` → libc | same |
//!
//! There is no separate `_PyMem_Malloc` implementation: the mem domain's default functions
//! *are* `_PyObject_Malloc` & co. The implementations ([`Layer::Allocator`]) take a leading
//! `void *ctx` argument, so their size is in `rsi`, not `rdi`.
//!
//! Nesting (verified by disassembly of pyenv 3.11.7, see `README.md`): one Python-level request
//! can pass several probes on the same thread, innermost last:
//!
//! * `PyObject_Malloc(n)` tail-jumps to `_PyObject_Malloc(ctx, n)`; for `n == 0` or `n > 512`
//!   that calls `PyMem_RawMalloc(n)` → `_PyMem_RawMalloc(ctx, n)` → libc `malloc(n)`.
//!   Same shape for calloc (`PyMem_RawCalloc`), realloc (`PyMem_RawRealloc` for blocks not in a
//!   pool, or `_PyObject_Malloc` + `_PyObject_Free` when a pool block moves) and free
//!   (`_PyObject_Free` → `PyMem_RawFree` → `free` for blocks not in a pool).
//! * Inside `_PyObject_Malloc`, a new arena calls the arena allocator (`_PyObject_ArenaMmap` →
//!   `mmap`) and grows pymalloc's bookkeeping with `PyMem_RawRealloc`/`PyMem_RawCalloc`;
//!   `_PyObject_Free` may release an arena (`_PyObject_ArenaMunmap` → `munmap`).
//!
//! * The arena allocator has a second client in 3.11+: the frame data stack
//!   (`_PyThreadState_BumpFramePointerSlow` → `_PyObject_VirtualAlloc(size)` →
//!   `_PyObject_ArenaMmap`, freed by `_PyThreadState_PopFrame` → `_PyObject_VirtualFree`), in
//!   chunks of 16 KiB and up, where pymalloc's arenas are 1 MiB (256 KiB before 3.10). An arena
//!   event under `_PyObject_VirtualAlloc/Free` is a frame-stack chunk, one under
//!   `_PyObject_Malloc/Free` a pymalloc arena.
//!
//! **Folding rule for the eBPF side:** a Python allocation counts once, at the *outermost*
//! active probe of [`Layer::Api`] or [`Layer::Allocator`] on the thread; everything that fires
//! while it is active (inner Python probes, and native libc `malloc`/`free` probes) belongs to
//! it and is not recorded again. Allocation kinds have a return probe, so "active" is the span
//! between entry and return (a per-thread depth counter; tail calls make the inner and outer
//! return probes fire on the same `ret`, innermost first). Frees have no return probe: nested
//! frees receive the *same pointer* (`PyObject_Free(p)` → `_PyObject_Free(ctx, p)` →
//! `PyMem_RawFree(p)` → `free(p)`), so the outermost free records `p` per thread and inner frees
//! of that pointer are dropped. Arena events ([`Layer::Arena`]) are not allocations of the
//! program but pymalloc's backing memory: record them separately, never fold them, and fold
//! the `mmap`/`munmap` under them. [`PyProbe::nests`] lists, per probe, the probed functions
//! reachable from it (found by following direct calls, PLT stubs and the allocator tables).
//!
//! Attaching only [`Layer::Allocator`] + [`Layer::Arena`] halves the cost per allocation; the
//! domain is then `obj` for pymalloc (which serves both `obj` and `mem`) and `raw`. The
//! [`Layer::Api`] probes give the exact domain.

mod alloc;
mod binary;
pub mod code;
mod dwarf;
pub mod frames;
mod gc;
pub mod installed;
pub mod linetable;
pub(crate) mod regs;
mod tables;
mod usdt;
mod version;

#[cfg(test)]
mod tests;

use std::{
    io,
    path::{Path, PathBuf},
};

pub use iced_x86::Register;

use crate::{
    elf::{ElfError, ElfImage, is_elf},
    probes::placement::Placement,
};
use binary::Binary;
pub use gc::{GcFunction, GcPoints, GcStatsLayout, GcValue};
pub use usdt::{UsdtArg, UsdtLocation, UsdtProbe};
pub use version::PyVersion;

#[derive(Debug, thiserror::Error)]
pub enum PyError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("{} is not a valid ELF file", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    #[error("{} defines CPython but its version cannot be read: {why}", path.display())]
    Version { path: PathBuf, why: String },
    #[error("{} is CPython for {arch}, only x86-64 is supported", path.display())]
    Architecture { path: PathBuf, arch: String },
}

/// Allocator domain, as the trace names it. `Obj` at the [`Layer::Allocator`] level is pymalloc
/// serving both `obj` and `mem`; arenas are 256 KiB in 3.8–3.9, 1 MiB from 3.10, mmap'ed.
pub use trace_format::names::Domain;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocKind {
    Alloc,
    Calloc,
    Realloc,
    Free,
    ArenaAlloc,
    ArenaFree,
}

impl AllocKind {
    /// Whether the probe also needs a return probe (for the address returned).
    pub fn has_return(self) -> bool {
        matches!(
            self,
            AllocKind::Alloc | AllocKind::Calloc | AllocKind::Realloc | AllocKind::ArenaAlloc
        )
    }
}

/// Which level of CPython's allocator a probe sits at (see the module docs for nesting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The public functions (`PyObject_Malloc`, `PyMem_Malloc`, `PyMem_RawMalloc`, ...): no
    /// `ctx` argument; they call through the domain's table.
    Api,
    /// The table's default implementations (`_PyObject_Malloc`, `_PyMem_RawMalloc`, ...):
    /// first argument `ctx`.
    Allocator,
    /// pymalloc's arena allocator (`_PyObject_ArenaMmap/Munmap`): `(ctx, size)`, `(ctx, ptr, size)`.
    /// (Its public entry points `_PyObject_VirtualAlloc/Free` are [`Layer::Api`] probes of
    /// the `arena` domain.)
    Arena,
}

/// Registers holding the arguments at the probed instruction (x86-64 SysV, full 64-bit names;
/// unchanged from function entry by construction of the placement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ArgRegs {
    pub ptr: Option<Register>,
    pub nmemb: Option<Register>,
    pub size: Option<Register>,
}

impl ArgRegs {
    /// The registers the entry probe reads, in the order ptr, nmemb, size.
    pub fn registers(&self) -> Vec<Register> {
        [self.ptr, self.nmemb, self.size]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// How a probed function's address was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// A symbol (`.symtab` or `.dynsym`) of that name.
    Symbol,
    /// Stripped build: the value in slot `slot` (1 = malloc ... 4 = free; arena: 1 = alloc,
    /// 2 = free) of the allocator table at `table_address`, located through the exported
    /// function `via`.
    AllocatorTable {
        table: &'static str,
        table_address: u64,
        slot: u8,
        via: &'static str,
    },
}

/// One uprobe to attach for Python allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyProbe {
    /// The trace's `func` value, e.g. `_PyObject_Malloc`.
    pub func: String,
    /// Other names at the same address.
    pub aliases: Vec<String>,
    pub domain: Domain,
    pub kind: AllocKind,
    pub layer: Layer,
    pub args: ArgRegs,
    /// Whether a return probe is needed (the returned address).
    pub has_return: bool,
    /// The function's address in the file.
    pub address: u64,
    pub placement: Placement,
    /// File offset of the probed instruction (function start + placement offset).
    pub file_offset: u64,
    pub found_by: FoundBy,
    /// Probed functions (by `func`) and libc functions (`libc:malloc`, ...) this one can reach
    /// while it runs: the events to fold into it.
    pub nests: Vec<String>,
}

/// Static (executable) or shared (libpython) interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// The interpreter is in `libpythonX.Y.so`.
    Shared,
    /// The interpreter is linked into the executable (Debian's `/usr/bin/python3.11`).
    Static,
}

/// Facts about how the interpreter was built, read from the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildFacts {
    pub linkage: Linkage,
    /// `.symtab` present (local symbols such as `_PyObject_Malloc`).
    pub has_symtab: bool,
    /// DWARF `.debug_info` present (uncompressed).
    pub has_debug_info: bool,
    /// pymalloc's body is compiled into its callers (LTO/PGO speculative devirtualization):
    /// calls from those sites pass no probe.
    pub allocator_inlined: bool,
    /// Built `--with-pymalloc` (the default object allocator is pymalloc, not libc).
    pub pymalloc: bool,
    /// `Py_DEBUG` build (reference-count debugging symbols; debug allocator hooks by default).
    pub debug_build: bool,
    /// `.note.stapsdt` present (`--with-dtrace`).
    pub usdt: bool,
    /// How each fact was established.
    pub evidence: Vec<String>,
}

/// A CPython interpreter found in a process's files.
pub struct PythonRuntime {
    bin: Binary,
    version: PyVersion,
    build: BuildFacts,
    tables: tables::Tables,
}

/// Markers that a file *defines* CPython (present from 2.7 to 3.13).
const INTERPRETER_MARKERS: [&str; 2] = ["Py_InitializeEx", "PyObject_Malloc"];

fn defines_interpreter(image: &ElfImage) -> bool {
    let symbols = image.function_symbols();
    INTERPRETER_MARKERS.iter().all(|marker| {
        symbols
            .binary_search_by(|s| s.name.as_str().cmp(marker))
            .is_ok()
    })
}

impl PythonRuntime {
    /// Detect CPython in a process's executable and mapped libraries (paths as in
    /// `/proc/PID/maps`): the first file that *defines* the interpreter (libpython, or the
    /// executable for a static build). `Ok(None)` when none does (not CPython: PyPy defines
    /// `PyPyObject_Malloc` instead). Files that are not ELF are skipped.
    pub fn detect(exe: &Path, libraries: &[PathBuf]) -> Result<Option<PythonRuntime>, PyError> {
        for path in std::iter::once(exe).chain(libraries.iter().map(PathBuf::as_path)) {
            let elf = is_elf(path).map_err(|source| PyError::Read {
                path: path.to_owned(),
                source,
            })?;
            if !elf {
                continue;
            }
            let image = ElfImage::open(path)?;
            if !defines_interpreter(&image) {
                continue;
            }
            drop(image);
            return PythonRuntime::from_file(path).map(Some);
        }
        Ok(None)
    }

    /// Open a file known to define CPython (libpython or a static python executable).
    pub fn from_file(path: &Path) -> Result<PythonRuntime, PyError> {
        let bin = Binary::open(path)?;
        if !bin.x86_64 {
            return Err(PyError::Architecture {
                path: path.to_owned(),
                arch: object_arch(&bin),
            });
        }
        let version = version::read_version(&bin)?;
        let tables = tables::Tables::recover(&bin);
        let build = alloc::build_facts(&bin, &tables);
        Ok(PythonRuntime {
            bin,
            version,
            build,
            tables,
        })
    }

    /// `(major, minor, micro)`, from `Py_Version` (3.11+) or the `PY_VERSION` string that
    /// `Py_GetVersion` formats.
    pub fn version(&self) -> (u32, u32, u32) {
        (self.version.major, self.version.minor, self.version.micro)
    }

    /// The full version (with release level and serial).
    pub fn full_version(&self) -> PyVersion {
        self.version
    }

    /// The file whose code runs the interpreter (where the allocator functions live).
    pub fn interpreter_file(&self) -> &Path {
        self.bin.path()
    }

    /// The interpreter file's GNU build id (hex), for matching probes to the mapped file.
    pub fn build_id(&self) -> Option<&str> {
        self.bin.image.build_id()
    }

    pub fn build(&self) -> BuildFacts {
        self.build.clone()
    }

    /// Probes to attach for Python's allocators, one per distinct address. See the module
    /// docs for the layers and the folding rule.
    pub fn allocator_probes(&self) -> Vec<PyProbe> {
        alloc::plan(&self.bin, &self.tables)
    }

    /// What the probes cannot see in this build, and what to do about it.
    pub fn limitations(&self) -> Vec<String> {
        alloc::limitations(&self.bin, &self.version, &self.build, &self.tables)
    }

    /// USDT probes from `.note.stapsdt` (empty without `--with-dtrace`).
    pub fn usdt_probes(&self) -> Vec<UsdtProbe> {
        usdt::parse(&self.bin).unwrap_or_default()
    }

    /// Offsets to walk and name the Python stack (CPython 3.11–3.13 with DWARF), or why not.
    pub fn frame_layout(&self) -> Result<frames::FrameLayout, frames::FrameLayoutError> {
        frames::layout(&self.bin, &self.version)
    }

    /// Where to observe garbage collections: USDT `gc__start`/`gc__done` when present, and
    /// the once-per-collection function usable with a uprobe/uretprobe pair.
    pub fn gc_points(&self) -> GcPoints {
        gc::points(&self.bin, &self.version, self.usdt_probes())
    }
}

fn object_arch(bin: &Binary) -> String {
    use object::Object as _;
    object::File::parse(bin.data()).map_or_else(
        |_| "unknown".to_owned(),
        |f| format!("{:?}", f.architecture()),
    )
}
