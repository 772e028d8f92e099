//! Tests against the interpreters installed on this machine, found by [`installed`] (pyenv,
//! `PATH`, or `ALLOCTRACE_TEST_PYTHONS`), never at assumed paths. Tests of general facts run on
//! every full-depth interpreter found (3.11, 3.12, 3.13); a missing one fails with `CI=true`
//! and is skipped with the reason printed elsewhere. Tests of one build's exact addresses and
//! placements run on that build when it is found (pyenv's 3.11.7, 3.8.18). Debian's stripped
//! `python3.11` (the partial mode) is the distribution's fixed path.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
};

use super::*;
use crate::{elf::ElfImage, probes::placement::writes_any};

const DEBIAN_311: &str = "/usr/bin/python3.11";
const DEBIAN_LIBPYTHON_311: &str = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0";
const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

/// Fails (never skips) when `path` is missing, saying how to install it.
fn require(path: &str) -> PathBuf {
    let how = if path.contains("libpython3.11") {
        "install Debian's shared libpython: `apt-get update && apt-get install -y libpython3.11`"
            .to_owned()
    } else if path.contains("python3.11") {
        "install Debian's interpreter: `apt-get update && apt-get install -y python3.11`".to_owned()
    } else {
        "install the package that provides it".to_owned()
    };
    assert!(Path::new(path).exists(), "{path} is missing: {how}");
    PathBuf::from(path)
}

fn discovery() -> &'static installed::Discovery {
    static FOUND: std::sync::OnceLock<installed::Discovery> = std::sync::OnceLock::new();
    FOUND.get_or_init(installed::Discovery::run)
}

fn runtime(interpreter: &installed::Interpreter) -> PythonRuntime {
    PythonRuntime::detect(
        &interpreter.exe,
        &[require(LIBC), interpreter.interpreter_file.clone()],
    )
    .unwrap()
    .unwrap_or_else(|| panic!("{}: CPython not detected", interpreter.exe.display()))
}

/// Every full-depth interpreter found (see the module docs), with its runtime.
fn each_interpreter(test: &str) -> Vec<(installed::Interpreter, PythonRuntime)> {
    discovery()
        .for_tests(test)
        .into_iter()
        .map(|i| (i.clone(), runtime(i)))
        .collect()
}

/// The build `version` (`3.11.7`) when the interpreter found for its minor version is that
/// build; otherwise `None`, with the reason printed (its exact addresses are that build's).
fn build(test: &str, version: &str) -> Option<(installed::Interpreter, PythonRuntime)> {
    let found = discovery()
        .found
        .iter()
        .find(|i| i.symtab && i.version_text() == version);
    match found {
        Some(i) => Some((i.clone(), runtime(i))),
        None => {
            eprintln!(
                "{test}: skipped: no CPython {version} with a symbol table found (searched {}); \
                 this test checks that build's exact addresses",
                discovery().searched
            );
            None
        }
    }
}

/// pyenv's 3.11.7, for the tests of its exact layout. With `CI=true` the machine kind has it:
/// its absence fails.
fn pyenv_3117(test: &str) -> Option<PythonRuntime> {
    let found = build(test, "3.11.7").map(|(_, py)| py);
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true and pyenv's CPython 3.11.7 (with symbols) is missing");
    }
    found
}

fn debian() -> PythonRuntime {
    PythonRuntime::detect(&require(DEBIAN_311), &[require(LIBC)])
        .unwrap()
        .unwrap()
}

fn by_func(probes: &[PyProbe]) -> BTreeMap<&str, &PyProbe> {
    probes.iter().map(|p| (p.func.as_str(), p)).collect()
}

fn decode_function(image: &ElfImage, address: u64, len: u64) -> Vec<Instruction> {
    let code = image.bytes_at(address, len).unwrap();
    Decoder::with_ip(64, code, address, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

fn symbol<'a>(image: &'a ElfImage, name: &str) -> &'a crate::elf::FunctionSymbol {
    image
        .function_symbols()
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not in {}", image.path().display()))
}

/// Whether `reg` carries an input of the function: read by one of the first instructions
/// before anything writes it, or still untouched when control first leaves the straight-line
/// prologue (passed on to a callee, e.g. `_PyObject_ArenaMmap`'s size to `mmap`).
fn register_is_input(instructions: &[Instruction], reg: Register) -> bool {
    let mut factory = InstructionInfoFactory::new();
    for instr in instructions.iter().take(16) {
        let info = factory.info(instr);
        let mut read = false;
        let mut written = false;
        for used in info.used_registers() {
            if used.register().full_register() != reg {
                continue;
            }
            match used.access() {
                OpAccess::Read
                | OpAccess::CondRead
                | OpAccess::ReadWrite
                | OpAccess::ReadCondWrite => {
                    read = true;
                }
                OpAccess::Write | OpAccess::CondWrite => written = true,
                _ => {}
            }
        }
        if read {
            return true;
        }
        if written {
            return false;
        }
        if instr.flow_control() != FlowControl::Next {
            return true;
        }
    }
    false
}

/// Check that every full-depth interpreter is found through its interpreter file (libpython,
/// not the small executable, for a shared build) when the caller passes the executable plus
/// mapped libraries, with the version the interpreter itself prints (`Py_Version`, 3.11+).
#[test]
fn detects_each_interpreter() {
    for (found, py) in each_interpreter("detects_each_interpreter") {
        assert_eq!(py.version(), found.version, "{}", found.exe.display());
        assert_eq!(py.full_version().release_level, 'f');
        assert_eq!(py.interpreter_file(), found.interpreter_file);
        assert!(py.build_id().is_some_and(|id| id.len() == 40));
        let build = py.build();
        assert!(build.has_symtab && build.has_debug_info && build.pymalloc);
        assert!(!build.allocator_inlined && !build.debug_build);
    }
}

/// Check another pyenv version (3.8.18, before `Py_Version` existed): the version comes from
/// the string `Py_GetVersion` formats, and the allocator layout is found the same way.
#[test]
fn detects_pyenv_38() {
    let Some((_, py)) = build("detects_pyenv_38", "3.8.18") else {
        return;
    };
    assert_eq!(py.version(), (3, 8, 18));
    let probes = py.allocator_probes();
    let funcs = by_func(&probes);
    for name in [
        "_PyObject_Malloc",
        "_PyObject_Free",
        "_PyMem_RawMalloc",
        "_PyObject_ArenaMmap",
    ] {
        assert!(funcs.contains_key(name), "{name} missing");
    }
    // 3.8's collect() exists as two .constprop clones; the full-collection clone has the
    // generation folded in (DW_AT_const_value 2) and its other arguments shifted down a
    // register, which only DWARF tells.
    let gc = py.gc_points();
    let full = gc
        .functions
        .iter()
        .find(|f| f.generation == Some(GcValue::Constant(2)))
        .unwrap_or_else(|| panic!("{gc:#?}"));
    assert_eq!(
        full.collected,
        Some(GcValue::OutPointer {
            register: Register::RDI
        })
    );
    assert!(full.callers.iter().any(|c| c == "PyGC_Collect"));
    assert!(gc.functions.iter().any(|f| f.generation
        == Some(GcValue::EntryRegister {
            register: Register::RDI,
            bytes: 4
        })
        && f.callers.iter().any(|c| c == "gc_collect")));
}

/// Check every interpreter with a symbol table found (pyenv's 2.7–3.13 on this machine kind):
/// detection, the version it prints itself, and probe offsets on instruction boundaries.
#[test]
fn all_found_versions_are_consistent() {
    let mut checked = 0;
    for found in discovery().found.iter().filter(|i| i.symtab) {
        let name = found.version_text();
        let py = runtime(found);
        assert_eq!(py.version(), found.version, "{name}");
        let image = ElfImage::open(&found.interpreter_file).unwrap();
        for p in py.allocator_probes() {
            let boundaries: Vec<u64> = decode_function(&image, p.address, p.placement.offset + 16)
                .iter()
                .map(|i| i.ip() - p.address)
                .collect();
            assert!(
                boundaries.contains(&p.placement.offset),
                "{name} {}",
                p.func
            );
            assert_eq!(
                image.file_offset(p.address + p.placement.offset),
                Some(p.file_offset)
            );
        }
        assert!(
            !py.gc_points().functions.is_empty(),
            "{name}: no GC function"
        );
        checked += 1;
    }
    // Full-depth ones are required (CI) or reported (elsewhere) like everywhere else.
    let _ = discovery().for_tests("all_found_versions_are_consistent");
    eprintln!("{checked} interpreters with symbols checked");
}

/// Check that a process without CPython (ls + libc) is not detected, and that non-ELF paths
/// among the libraries are skipped.
#[test]
fn not_cpython() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("not-elf");
    std::fs::write(&text, "hello").unwrap();
    let found = PythonRuntime::detect(Path::new("/bin/ls"), &[require(LIBC), text]).unwrap();
    assert!(found.is_none());
}

/// Function, domain, kind, layer, (ptr, nmemb, size) registers.
type Expected = (
    &'static str,
    Domain,
    AllocKind,
    Layer,
    [Option<Register>; 3],
);

/// Check the 3.11.7 plan: all four layers' functions, one probe per address, domains, kinds,
/// argument registers (the ctx-first ABI of the implementations), and placements.
#[test]
fn pyenv_311_allocator_probes() {
    let Some(py) = pyenv_3117("pyenv_311_allocator_probes") else {
        return;
    };
    let probes = py.allocator_probes();
    let funcs = by_func(&probes);
    use AllocKind::*;
    use Register::{RDI, RDX, RSI};
    let expected: &[Expected] = &[
        (
            "_PyObject_Malloc",
            Domain::Obj,
            Alloc,
            Layer::Allocator,
            [None, None, Some(RSI)],
        ),
        (
            "_PyObject_Calloc",
            Domain::Obj,
            Calloc,
            Layer::Allocator,
            [None, Some(RSI), Some(RDX)],
        ),
        (
            "_PyObject_Realloc",
            Domain::Obj,
            Realloc,
            Layer::Allocator,
            [Some(RSI), None, Some(RDX)],
        ),
        (
            "_PyObject_Free",
            Domain::Obj,
            Free,
            Layer::Allocator,
            [Some(RSI), None, None],
        ),
        (
            "_PyMem_RawMalloc",
            Domain::Raw,
            Alloc,
            Layer::Allocator,
            [None, None, Some(RSI)],
        ),
        (
            "_PyMem_RawCalloc",
            Domain::Raw,
            Calloc,
            Layer::Allocator,
            [None, Some(RSI), Some(RDX)],
        ),
        (
            "_PyMem_RawRealloc",
            Domain::Raw,
            Realloc,
            Layer::Allocator,
            [Some(RSI), None, Some(RDX)],
        ),
        (
            "_PyMem_RawFree",
            Domain::Raw,
            Free,
            Layer::Allocator,
            [Some(RSI), None, None],
        ),
        (
            "_PyObject_ArenaMmap",
            Domain::Arena,
            ArenaAlloc,
            Layer::Arena,
            [None, None, Some(RSI)],
        ),
        (
            "_PyObject_ArenaMunmap",
            Domain::Arena,
            ArenaFree,
            Layer::Arena,
            [Some(RSI), None, Some(RDX)],
        ),
        (
            "_PyObject_VirtualAlloc",
            Domain::Arena,
            ArenaAlloc,
            Layer::Api,
            [None, None, Some(RDI)],
        ),
        (
            "_PyObject_VirtualFree",
            Domain::Arena,
            ArenaFree,
            Layer::Api,
            [Some(RDI), None, Some(RSI)],
        ),
        (
            "PyObject_Malloc",
            Domain::Obj,
            Alloc,
            Layer::Api,
            [None, None, Some(RDI)],
        ),
        (
            "PyObject_Calloc",
            Domain::Obj,
            Calloc,
            Layer::Api,
            [None, Some(RDI), Some(RSI)],
        ),
        (
            "PyObject_Realloc",
            Domain::Obj,
            Realloc,
            Layer::Api,
            [Some(RDI), None, Some(RSI)],
        ),
        (
            "PyObject_Free",
            Domain::Obj,
            Free,
            Layer::Api,
            [Some(RDI), None, None],
        ),
        (
            "PyMem_Malloc",
            Domain::Mem,
            Alloc,
            Layer::Api,
            [None, None, Some(RDI)],
        ),
        (
            "PyMem_Calloc",
            Domain::Mem,
            Calloc,
            Layer::Api,
            [None, Some(RDI), Some(RSI)],
        ),
        (
            "PyMem_Realloc",
            Domain::Mem,
            Realloc,
            Layer::Api,
            [Some(RDI), None, Some(RSI)],
        ),
        (
            "PyMem_Free",
            Domain::Mem,
            Free,
            Layer::Api,
            [Some(RDI), None, None],
        ),
        (
            "PyMem_RawMalloc",
            Domain::Raw,
            Alloc,
            Layer::Api,
            [None, None, Some(RDI)],
        ),
        (
            "PyMem_RawCalloc",
            Domain::Raw,
            Calloc,
            Layer::Api,
            [None, Some(RDI), Some(RSI)],
        ),
        (
            "PyMem_RawRealloc",
            Domain::Raw,
            Realloc,
            Layer::Api,
            [Some(RDI), None, Some(RSI)],
        ),
        (
            "PyMem_RawFree",
            Domain::Raw,
            Free,
            Layer::Api,
            [Some(RDI), None, None],
        ),
    ];
    assert_eq!(probes.len(), expected.len(), "{:#?}", funcs.keys());
    for (name, domain, kind, layer, [ptr, nmemb, size]) in expected {
        let p = funcs.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            (p.domain, p.kind, p.layer),
            (*domain, *kind, *layer),
            "{name}"
        );
        assert_eq!(
            p.args,
            ArgRegs {
                ptr: *ptr,
                nmemb: *nmemb,
                size: *size
            },
            "{name}"
        );
        assert_eq!(p.has_return, kind.has_return(), "{name}");
        assert_eq!(p.found_by, FoundBy::Symbol, "{name}");
    }
    let mut addresses: Vec<u64> = probes.iter().map(|p| p.address).collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), probes.len(), "one probe per address");
    assert_eq!(Domain::Arena.as_str(), "arena");
    assert_eq!(funcs["PyMem_Malloc"].domain.as_str(), "mem");

    // The hot implementations get emulated spots (placement.rs rules).
    for name in [
        "_PyObject_Malloc",
        "_PyObject_Calloc",
        "_PyObject_Realloc",
        "_PyObject_Free",
        "_PyMem_RawMalloc",
        "_PyMem_RawFree",
    ] {
        assert!(
            funcs[name].placement.emulated,
            "{name}: {}",
            funcs[name].placement.describe()
        );
    }
    // `lea rax,[rsi-1]` is single-stepped and reads the size; `push rbx` at +4 is the first
    // emulated instruction.
    assert_eq!(funcs["_PyObject_Malloc"].placement.offset, 4);
    assert_eq!(funcs["_PyObject_Malloc"].placement.instruction, "push rbx");
    // `test rsi,rsi; je` → the `je` at +3.
    assert_eq!(funcs["_PyObject_Free"].placement.offset, 3);
}

/// Check the argument registers against the code: every register a probe reads is an input
/// of its function (read before written, or passed on untouched); `_PyObject_Malloc` compares
/// `size - 1` with 511 (SMALL_REQUEST_THRESHOLD - 1) using the size register; placements are
/// instruction boundaries and keep the registers intact. On every full-depth interpreter.
#[test]
fn registers_match_disassembly() {
    for (_, py) in each_interpreter("registers_match_disassembly") {
        registers_match(&py);
    }
}

fn registers_match(py: &PythonRuntime) {
    let image = ElfImage::open(py.interpreter_file()).unwrap();
    let mut factory = InstructionInfoFactory::new();
    for p in py.allocator_probes() {
        let sym = symbol(&image, &p.func);
        let code = decode_function(&image, sym.address, sym.size);
        for reg in p.args.registers() {
            assert!(
                register_is_input(&code, reg),
                "{}: {reg:?} is not an input",
                p.func
            );
        }
        // The implementations never use rdi (ctx) as the size.
        if p.layer != Layer::Api {
            assert_ne!(p.args.size, Some(Register::RDI), "{}", p.func);
        }
        let boundaries: Vec<u64> = code.iter().map(|i| i.ip() - sym.address).collect();
        assert!(boundaries.contains(&p.placement.offset), "{}", p.func);
        assert_eq!(
            image.file_offset(p.address + p.placement.offset),
            Some(p.file_offset)
        );
        for instr in code
            .iter()
            .take_while(|i| i.ip() < p.address + p.placement.offset)
        {
            let args = p.args.registers();
            assert_eq!(
                writes_any(&mut factory, instr, &args),
                None,
                "{}: {instr} before the probe clobbers an argument",
                p.func
            );
        }
    }
    // 3.11's code shape; 3.12+ first fetch the interpreter's obmalloc state (thread-local).
    if py.version().1 != 11 {
        return;
    }
    let malloc = symbol(&image, "_PyObject_Malloc");
    let code = decode_function(&image, malloc.address, malloc.size);
    let lea = code
        .iter()
        .position(|i| i.mnemonic() == iced_x86::Mnemonic::Lea)
        .unwrap();
    assert_eq!(code[lea].memory_base(), Register::RSI);
    assert_eq!(code[lea].memory_displacement64() as i64, -1);
    let cmp = code
        .iter()
        .find(|i| i.mnemonic() == iced_x86::Mnemonic::Cmp)
        .unwrap();
    assert_eq!(cmp.immediate(1), 511);
}

/// Check the nesting found by following calls: PyObject_Malloc → _PyObject_Malloc →
/// PyMem_RawMalloc → _PyMem_RawMalloc → libc malloc, arenas under pymalloc, frees likewise.
#[test]
fn pyenv_311_nesting() {
    let Some(py) = pyenv_3117("pyenv_311_nesting") else {
        return;
    };
    let probes = py.allocator_probes();
    let funcs = by_func(&probes);
    let nests = |name: &str, inner: &str| funcs[name].nests.iter().any(|n| n == inner);
    assert!(nests("PyObject_Malloc", "_PyObject_Malloc"));
    assert!(
        nests("PyMem_Malloc", "_PyObject_Malloc"),
        "the mem domain is pymalloc"
    );
    assert!(
        nests("_PyObject_Malloc", "PyMem_RawMalloc"),
        "> 512 bytes go to the raw domain"
    );
    assert!(nests("_PyObject_Malloc", "_PyObject_ArenaMmap"));
    assert!(nests("PyMem_RawMalloc", "_PyMem_RawMalloc"));
    assert!(nests("_PyMem_RawMalloc", "libc:malloc"));
    assert!(nests("_PyObject_Free", "PyMem_RawFree"));
    assert!(nests("_PyObject_Free", "_PyObject_ArenaMunmap"));
    assert!(nests("_PyMem_RawFree", "libc:free"));
    assert!(nests("_PyObject_ArenaMmap", "libc:mmap64"));
    assert!(
        nests("_PyObject_VirtualAlloc", "_PyObject_ArenaMmap"),
        "frame stack chunks"
    );
    assert!(nests("_PyObject_VirtualFree", "_PyObject_ArenaMunmap"));
    assert!(
        nests("_PyObject_Realloc", "_PyObject_Malloc")
            && nests("_PyObject_Realloc", "_PyObject_Free")
    );
    assert!(!nests("_PyMem_RawMalloc", "_PyObject_Malloc"));
}

/// Check Debian's python3.11: a static, stripped LTO+PGO build whose pymalloc is inlined; the
/// allocator functions are recovered from the tables (checked against the `cmp` guard in
/// `PyObject_Malloc`), the exported functions are probed, and the limitations say what is
/// missed and what to do.
#[test]
fn debian_311_inlined_allocator() {
    let py = debian();
    assert_eq!(py.interpreter_file(), Path::new(DEBIAN_311));
    assert_eq!(py.version().0, 3);
    assert_eq!(py.version().1, 11);
    let build = py.build();
    assert_eq!(build.linkage, Linkage::Static);
    assert!(!build.has_symtab && !build.has_debug_info);
    assert!(build.allocator_inlined, "{:#?}", build.evidence);
    assert!(build.pymalloc && build.usdt && !build.debug_build);

    let probes = py.allocator_probes();
    let funcs = by_func(&probes);
    let malloc = funcs["_PyObject_Malloc"];
    assert!(matches!(
        malloc.found_by,
        FoundBy::AllocatorTable {
            table: "_PyObject",
            slot: 1,
            ..
        }
    ));
    // PyObject_Malloc's guard compares the table slot with the out-of-line _PyObject_Malloc.
    let image = ElfImage::open(Path::new(DEBIAN_311)).unwrap();
    let wrapper = symbol(&image, "PyObject_Malloc");
    let guard = decode_function(&image, wrapper.address, wrapper.size)
        .into_iter()
        .find(|i| {
            i.mnemonic() == iced_x86::Mnemonic::Cmp
                && i.op1_kind() == iced_x86::OpKind::Immediate32to64
        })
        .unwrap();
    assert_eq!(guard.immediate(1), malloc.address);
    for name in [
        "PyObject_Malloc",
        "PyObject_Free",
        "PyMem_Malloc",
        "PyMem_Free",
        "_PyObject_Free",
        "_PyMem_RawMalloc",
        "_PyObject_ArenaMmap",
    ] {
        assert!(funcs.contains_key(name), "{name} missing");
    }
    assert_eq!(funcs["PyObject_Free"].found_by, FoundBy::Symbol);
    assert_eq!(funcs["PyObject_Free"].args.ptr, Some(Register::RDI));
    let limitations = py.limitations().join("\n");
    assert!(limitations.contains("pymalloc is inlined"), "{limitations}");
    assert!(limitations.contains("PYTHONMALLOC=malloc"), "{limitations}");
    assert!(
        limitations.contains("PyObject_Malloc/Calloc/Realloc/Free"),
        "{limitations}"
    );
}

/// Check the USDT notes of Debian's python3.11: the gc probes' names, `.stapsdt.base`-corrected
/// addresses that land on a `nop`, semaphores inside `.probes` with their file offsets, and
/// the argument specs parsed into typed operands.
#[test]
fn debian_311_usdt() {
    let py = debian();
    let probes = py.usdt_probes();
    let names: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
    for name in [
        "gc__start",
        "gc__done",
        "function__entry",
        "function__return",
        "line",
        "import__find__load__start",
        "import__find__load__done",
        "audit",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let image = ElfImage::open(Path::new(DEBIAN_311)).unwrap();
    let data = std::fs::read(DEBIAN_311).unwrap();
    let file = object::File::parse(&*data).unwrap();
    use object::{Object as _, ObjectSection as _};
    let probes_section = file.section_by_name(".probes").unwrap();
    let (probes_offset, probes_size) = probes_section.file_range().unwrap();
    for p in &probes {
        assert_eq!(p.provider, "python");
        let code = image.bytes_at(p.pc, 16).unwrap();
        let instr = Decoder::with_ip(64, code, p.pc, DecoderOptions::NONE).decode();
        assert_eq!(
            instr.mnemonic(),
            iced_x86::Mnemonic::Nop,
            "{}: {instr}",
            p.name
        );
        assert_eq!(image.file_offset(p.pc), Some(p.file_offset));
        let sem = p.semaphore.unwrap();
        assert!(
            sem >= probes_section.address() && sem + 2 <= probes_section.address() + probes_size,
            "{}",
            p.name
        );
        assert_eq!(
            p.semaphore_offset,
            Some(probes_offset + sem - probes_section.address())
        );
        // The semaphore is a zero u16 in the file (the kernel counts attached probes in it).
        let off = usize::try_from(p.semaphore_offset.unwrap()).unwrap();
        assert_eq!(&data[off..off + 2], &[0, 0]);
    }
    let start = probes.iter().find(|p| p.name == "gc__start").unwrap();
    assert_eq!(start.args.len(), 1);
    assert_eq!(
        (start.args[0].size, start.args[0].signed),
        (4, true),
        "int generation"
    );
    assert!(
        matches!(
            start.args[0].location,
            UsdtLocation::Memory {
                base: Some(Register::RSP),
                index: None,
                ..
            } | UsdtLocation::Register(_)
        ),
        "{:?}",
        start.args[0]
    );
    let done = probes.iter().find(|p| p.name == "gc__done").unwrap();
    assert_eq!(done.args.len(), 1);
    assert_eq!(
        (done.args[0].size, done.args[0].signed),
        (8, true),
        "Py_ssize_t n"
    );
    // Every spec of this build is understood.
    for p in &probes {
        assert!(
            p.args
                .iter()
                .all(|a| !matches!(a.location, UsdtLocation::Unknown(_))),
            "{}: {}",
            p.name,
            p.raw_args
        );
        assert_eq!(p.args.len(), p.raw_args.split_whitespace().count());
    }
    let gc = py.gc_points();
    assert_eq!(gc.usdt_start.as_ref().map(|p| p.pc), Some(start.pc));
    assert_eq!(gc.usdt_done.as_ref().map(|p| p.pc), Some(done.pc));
    assert!(
        gc.functions.is_empty(),
        "stripped: no collection function symbol"
    );
}

/// Check Debian's shared, stripped libpython3.11: the allocator tables are found through
/// `R_X86_64_RELATIVE` relocations, and `_PyObject_Malloc` is the function `PyObject_Malloc`
/// tail-jumps to through `_PyObject.malloc`.
#[test]
fn debian_shared_libpython_tables() {
    let lib = require(DEBIAN_LIBPYTHON_311);
    let py = PythonRuntime::from_file(&lib).unwrap();
    let build = py.build();
    assert!(!build.has_symtab && !build.allocator_inlined && build.pymalloc);
    let probes = py.allocator_probes();
    let funcs = by_func(&probes);
    let bin = binary::Binary::open(&lib).unwrap();
    let wrapper = symbol(&bin.image, "PyObject_Malloc");
    let jump = decode_function(&bin.image, wrapper.address, wrapper.size)
        .into_iter()
        .find(|i| i.flow_control() == FlowControl::IndirectBranch)
        .unwrap();
    assert_eq!(
        bin.pointer_at(jump.ip_rel_memory_address()),
        Some(funcs["_PyObject_Malloc"].address)
    );
    assert!(funcs["_PyObject_Malloc"].placement.emulated);
    assert!(funcs.contains_key("_PyObject_ArenaMunmap") && funcs.contains_key("_PyMem_RawFree"));
}

/// Check the GC points of 3.11.7: `gc_collect_main` (not inlined: 4 direct callers), its
/// arguments from DWARF location lists (generation in esi, out-pointers in rdx/rcx), its
/// return value, and the generation_stats offsets — checked against the prologue's own
/// accesses (`mov rbp,[rdi+0x10]` = tstate->interp, `lea rax,[rbp+0x288]` = &interp->gc).
#[test]
fn pyenv_311_gc_points() {
    let Some(py) = pyenv_3117("pyenv_311_gc_points") else {
        return;
    };
    let gc = py.gc_points();
    assert!(
        gc.usdt_start.is_none() && gc.usdt_done.is_none(),
        "pyenv is built without dtrace"
    );
    assert_eq!(gc.functions.len(), 1, "{gc:#?}");
    let f = &gc.functions[0];
    assert_eq!(f.symbol, "gc_collect_main");
    assert!(f.params_from.starts_with("DWARF"));
    assert_eq!(
        f.tstate,
        Some(GcValue::EntryRegister {
            register: Register::RDI,
            bytes: 8
        })
    );
    assert_eq!(
        f.generation,
        Some(GcValue::EntryRegister {
            register: Register::RSI,
            bytes: 4
        })
    );
    assert_eq!(
        f.collected,
        Some(GcValue::OutPointer {
            register: Register::RDX
        })
    );
    assert_eq!(
        f.uncollectable,
        Some(GcValue::OutPointer {
            register: Register::RCX
        })
    );
    assert_eq!(
        f.total,
        Some(GcValue::ReturnRegister {
            register: Register::RAX,
            bytes: 8
        })
    );
    for caller in [
        "gc_collect",
        "PyGC_Collect",
        "_PyGC_CollectNoFail",
        "_PyObject_GC_Link",
    ] {
        assert!(
            f.callers.iter().any(|c| c == caller),
            "{caller} not in {:?}",
            f.callers
        );
    }
    assert!(f.placement.emulated, "{}", f.placement.describe());
    let stats = gc.stats.clone().unwrap();
    assert_eq!(
        stats,
        GcStatsLayout {
            tstate_interp: 0x10,
            interp_gc: 0x288,
            gc_generation_stats: 128,
            generations: 3,
            stats_size: 24,
            collections: 0,
            collected: 8,
            uncollectable: 16,
        }
    );
    // The prologue itself reads tstate->interp and computes &interp->gc with these offsets,
    // and saves the generation from esi.
    let image = ElfImage::open(py.interpreter_file()).unwrap();
    let code = decode_function(&image, f.address, 64);
    assert!(code.iter().any(|i| i.mnemonic() == iced_x86::Mnemonic::Mov
        && i.memory_base() == Register::RDI
        && i.memory_displacement64() == stats.tstate_interp));
    assert!(
        code.iter().any(|i| i.mnemonic() == iced_x86::Mnemonic::Lea
            && i.memory_displacement64() == stats.interp_gc)
    );
    assert!(code.iter().any(|i| i.mnemonic() == iced_x86::Mnemonic::Mov
        && i.op_count() == 2
        && i.op1_kind() == iced_x86::OpKind::Register
        && i.op1_register() == Register::ESI));
}

/// Check the USDT argument-spec parser on the operand forms GAS emits.
#[test]
fn usdt_arg_specs() {
    let args = usdt::parse_args(
        "-4@%eax 8@%rbx -4@112(%rsp) 8@$5 -8@-16(%rbp,%rax,8) 8@sym+4(%rip) 2@%r12w 1@%sil 8@-0x10(%r8) 8@?",
    );
    assert_eq!(args.len(), 10);
    assert_eq!(
        args[0],
        UsdtArg {
            size: 4,
            signed: true,
            location: UsdtLocation::Register(Register::EAX)
        }
    );
    assert_eq!(args[1].location, UsdtLocation::Register(Register::RBX));
    assert_eq!(
        args[2].location,
        UsdtLocation::Memory {
            base: Some(Register::RSP),
            index: None,
            scale: 1,
            offset: 112,
            symbol: None
        }
    );
    assert_eq!(args[3].location, UsdtLocation::Immediate(5));
    assert_eq!(
        args[4].location,
        UsdtLocation::Memory {
            base: Some(Register::RBP),
            index: Some(Register::RAX),
            scale: 8,
            offset: -16,
            symbol: None
        }
    );
    assert_eq!(
        args[5].location,
        UsdtLocation::Memory {
            base: Some(Register::RIP),
            index: None,
            scale: 1,
            offset: 4,
            symbol: Some("sym".into())
        }
    );
    assert_eq!(args[6].location, UsdtLocation::Register(Register::R12W));
    assert_eq!(args[7].location, UsdtLocation::Register(Register::SIL));
    assert_eq!(
        args[8].location,
        UsdtLocation::Memory {
            base: Some(Register::R8),
            index: None,
            scale: 1,
            offset: -16,
            symbol: None
        }
    );
    assert!(matches!(args[9].location, UsdtLocation::Unknown(_)));
}

/// Check version parsing from `PY_VERSION_HEX` and from `PY_VERSION` strings.
#[test]
fn version_forms() {
    let v = PyVersion::from_hex(0x030b07f0).unwrap();
    assert_eq!(
        (v.major, v.minor, v.micro, v.release_level, v.serial),
        (3, 11, 7, 'f', 0)
    );
    assert_eq!(
        PyVersion::from_hex(0x030c00c1).unwrap().to_string(),
        "3.12.0rc1"
    );
    assert_eq!(PyVersion::parse("3.11.2+").unwrap().to_string(), "3.11.2");
    assert_eq!(
        PyVersion::parse("3.13.0b3").unwrap().to_string(),
        "3.13.0b3"
    );
    assert!(PyVersion::parse("GCC 12.2.0").is_none());
    assert!(PyVersion::parse("11.4.0").is_none());
}

/// Check that damaged files give errors or partial answers, never panics: a truncated
/// libpython, and Debian's python3.11 with garbage in its `.note.stapsdt` sizes and in its
/// allocator tables.
#[test]
fn damaged_files_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let Some(py) = pyenv_3117("damaged_files_do_not_panic") else {
        return;
    };
    let lib = std::fs::read(py.interpreter_file()).unwrap();
    for cut in [64, 4096, lib.len() / 3, lib.len() / 2, lib.len() - 1000] {
        let path = dir.path().join(format!("cut{cut}"));
        std::fs::write(&path, &lib[..cut]).unwrap();
        if let Ok(py) = PythonRuntime::from_file(&path) {
            let _ = (
                py.allocator_probes(),
                py.limitations(),
                py.usdt_probes(),
                py.gc_points(),
            );
        }
    }
    let mut exe = std::fs::read(require(DEBIAN_311)).unwrap();
    let file = object::File::parse(&*exe).unwrap();
    use object::{Object as _, ObjectSection as _};
    let (notes, _) = file
        .section_by_name(".note.stapsdt")
        .unwrap()
        .file_range()
        .unwrap();
    let data_section = file.section_by_name(".data").unwrap();
    let (data_offset, _) = data_section.file_range().unwrap();
    // `_PyObject` at 0x959f40 in this build: point its slots at garbage.
    let table = usize::try_from(0x959f40 - data_section.address() + data_offset).unwrap();
    drop(file);
    let notes = usize::try_from(notes).unwrap();
    exe[notes..notes + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    exe[notes + 4..notes + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    exe[table + 8..table + 40].fill(0xff);
    let path = dir.path().join("python3.11");
    std::fs::write(&path, &exe).unwrap();
    let py = PythonRuntime::from_file(&path).unwrap();
    assert!(
        py.usdt_probes().is_empty(),
        "the first note's sizes are garbage"
    );
    let probes = py.allocator_probes();
    assert!(!probes.iter().any(|p| p.func == "_PyObject_Malloc"));
    assert!(probes.iter().any(|p| p.func == "PyObject_Malloc"));
    let _ = (py.limitations(), py.gc_points(), py.build());
}

/// Check that the frame-walk offsets read from pyenv 3.11.7's DWARF are the ones gdb prints
/// (`ptype /o struct _PyInterpreterFrame`, `PyCodeObject`, `PyASCIIObject`, ...; `_PyRuntime`
/// at 0x54e540, `gilstate.tstate_current` at +0x240).
#[test]
fn pyenv_311_frame_layout() {
    let Some(py) = pyenv_3117("pyenv_311_frame_layout") else {
        return;
    };
    let layout = py.frame_layout().unwrap();
    assert_eq!(
        layout,
        frames::FrameLayout {
            tstate_current: 0x54e540 + 0x240,
            tstate_cframe: 0x38,
            tstate_native_thread_id: 0xa0,
            cframe_current_frame: Some(8),
            frame_code: 32,
            frame_previous: 48,
            frame_instr: 56,
            frame_owner: 69,
            cstack_owner: None,
            code_name: 120,
            code_qualname: 128,
            code_filename: 112,
            code_firstlineno: 72,
            code_linetable: 136,
            code_firsttraceable: 168,
            code_adaptive: 184,
            code_size: 185,
            var_size: 16,
            bytes_data: 32,
            str_length: 16,
            str_state: 32,
            str_kind_bits: (2, 3),
            str_compact_bit: 5,
            str_ascii_bit: 6,
            str_ascii_data: 48,
            str_compact_data: 72,
        }
    );
}

/// The value gdb prints for `expr` in `file` (its own DWARF reader, independent of ours).
fn gdb_values(file: &Path, exprs: &[String]) -> Vec<u64> {
    let mut cmd = std::process::Command::new("gdb");
    cmd.args(["-nx", "-batch"]);
    for e in exprs {
        cmd.arg("-ex").arg(format!("print (unsigned long)({e})"));
    }
    let out = cmd
        .arg(file)
        .output()
        .expect("gdb runs (`cargo xtask setup` installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split_once(" = ")?.1.trim().parse().ok())
        .collect();
    assert_eq!(
        values.len(),
        exprs.len(),
        "gdb: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    values
}

/// Check the frame-walk layout of every full-depth interpreter (3.11, 3.12, 3.13) against the
/// offsets and addresses gdb computes from the same DWARF: where the GIL holder's thread state
/// is (3.11 `gilstate.tstate_current`, 3.12+ the main interpreter's `_gil.last_holder`), the
/// thread state's `cframe` (3.13: `current_frame`), the frame's `f_code`/`f_executable`,
/// `prev_instr`/`instr_ptr` and `owner`, and the code, bytes and str members.
#[test]
fn frame_layouts_match_gdb() {
    for (found, py) in each_interpreter("frame_layouts_match_gdb") {
        let layout = py.frame_layout().unwrap();
        let minor = found.version.1;
        let off = |ty: &str, member: &str| format!("&(({ty} *)0)->{member}");
        let mut exprs = vec![
            if minor == 11 {
                "&_PyRuntime.gilstate.tstate_current".to_owned()
            } else {
                "&_PyRuntime._main_interpreter._gil.last_holder".to_owned()
            },
            off(
                "PyThreadState",
                if minor <= 12 {
                    "cframe"
                } else {
                    "current_frame"
                },
            ),
            off("PyThreadState", "native_thread_id"),
            off(
                "struct _PyInterpreterFrame",
                if minor <= 12 {
                    "f_code"
                } else {
                    "f_executable"
                },
            ),
            off("struct _PyInterpreterFrame", "previous"),
            off(
                "struct _PyInterpreterFrame",
                if minor <= 12 {
                    "prev_instr"
                } else {
                    "instr_ptr"
                },
            ),
            off("struct _PyInterpreterFrame", "owner"),
            off("PyCodeObject", "co_name"),
            off("PyCodeObject", "co_qualname"),
            off("PyCodeObject", "co_filename"),
            off("PyCodeObject", "co_firstlineno"),
            off("PyCodeObject", "co_linetable"),
            off("PyCodeObject", "_co_firsttraceable"),
            off("PyCodeObject", "co_code_adaptive"),
            off("PyVarObject", "ob_size"),
            off("PyBytesObject", "ob_sval"),
            off("PyASCIIObject", "length"),
            off("PyASCIIObject", "state"),
            "sizeof(PyASCIIObject)".to_owned(),
            "sizeof(PyCompactUnicodeObject)".to_owned(),
        ];
        if minor <= 12 {
            exprs.push(off("_PyCFrame", "current_frame"));
        }
        let v = gdb_values(&found.interpreter_file, &exprs);
        let ours = [
            layout.tstate_current,
            layout.tstate_cframe,
            layout.tstate_native_thread_id,
            layout.frame_code,
            layout.frame_previous,
            layout.frame_instr,
            layout.frame_owner,
            layout.code_name,
            layout.code_qualname,
            layout.code_filename,
            layout.code_firstlineno,
            layout.code_linetable,
            layout.code_firsttraceable,
            layout.code_adaptive,
            layout.var_size,
            layout.bytes_data,
            layout.str_length,
            layout.str_state,
            layout.str_ascii_data,
            layout.str_compact_data,
        ];
        for (i, (ours, gdb)) in ours.iter().zip(&v).enumerate() {
            assert_eq!(ours, gdb, "{} {}", found.version_text(), exprs[i]);
        }
        assert_eq!(layout.cframe_current_frame, v.get(ours.len()).copied());
        assert_eq!(layout.cstack_owner, (minor >= 12).then_some(3));
    }
}

/// Check that other versions and builds without DWARF say why Python frames are unavailable
/// instead of guessing offsets.
#[test]
fn frame_layout_unavailable() {
    if let Some((_, py)) = build("frame_layout_unavailable", "3.8.18") {
        let err = py.frame_layout().unwrap_err();
        assert!(
            matches!(err, frames::FrameLayoutError::Version { ref version } if version == "3.8.18"),
            "{err}"
        );
    }
    // Debian's build is stripped: the symbols are exported, the struct layouts are gone.
    let err = debian().frame_layout().unwrap_err();
    assert!(
        matches!(err, frames::FrameLayoutError::NoDwarf { .. }),
        "{err}"
    );
}

/// Check that versions newer than the known layouts (3.14, whose frames hold tagged stack
/// references) are recognised and told apart from old ones, with a line for run.json that says
/// what is not supported.
#[test]
fn newer_versions_are_recognised() {
    for text in ["3.14.0", "3.14.0rc2", "3.15.0a1"] {
        let version = PyVersion::parse(text).unwrap();
        let err = frames::check_version(&version).unwrap_err();
        assert!(
            matches!(err, frames::FrameLayoutError::Newer { .. }),
            "{text}: {err}"
        );
        let line = err.to_string();
        assert!(
            line.contains(text) && line.contains("3.11–3.13") && line.contains("not recorded"),
            "{line}"
        );
        let limits = alloc::version_limitations(&version);
        assert!(
            limits
                .iter()
                .any(|l| l.contains(text) && l.contains("newer")),
            "{limits:?}"
        );
    }
    for text in ["3.11.7", "3.12.1", "3.13.0"] {
        let version = PyVersion::parse(text).unwrap();
        assert!(frames::check_version(&version).is_ok(), "{text}");
        assert!(alloc::version_limitations(&version).is_empty(), "{text}");
    }
    assert!(matches!(
        frames::check_version(&PyVersion::parse("3.10.13").unwrap()),
        Err(frames::FrameLayoutError::Version { .. })
    ));
}

/// Check the location-table decoder against the lines CPython itself reports
/// (`co_positions()`, one entry per code unit, for every code object of a snippet with long
/// functions, backward line jumps, multi-line expressions, comprehensions and lines without a
/// location).
#[test]
fn linetable_matches_cpython() {
    for (found, _) in each_interpreter("linetable_matches_cpython") {
        linetable_matches(&found.exe);
    }
}

fn linetable_matches(python: &Path) {
    let script = r#"
import json, sys
src = '''
import os

def f(a, b):
    x = [i * 2
         for i in range(a)]
    while b > 0:
        b -= 1
        if b % 3 == 0:
            continue
        x.append(
            b)
    return x

class C:
    def m(self):
        def inner():
            return {k: v for k, v in zip("ab", "cd")}
        return inner

async def g():
    try:
        await something()
    except Exception as e:
        raise ValueError() from e
''' + "\n".join(f"v{i} = {i}" for i in range(400)) + "\n\ndef far():\n    return 1\n"
code = compile(src, "<snippet>", "exec")
out = []
def walk(co):
    out.append({"first": co.co_firstlineno, "table": co.co_linetable.hex(),
                "lines": [p[0] for p in co.co_positions()]})
    for c in co.co_consts:
        if hasattr(c, "co_code"):
            walk(c)
walk(code)
json.dump(out, sys.stdout)
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let codes: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let codes = codes.as_array().unwrap();
    assert!(codes.len() >= 7, "{} code objects", codes.len());
    let mut checked = 0;
    for code in codes {
        let first = code["first"].as_i64().unwrap() as i32;
        let hex = code["table"].as_str().unwrap();
        let table: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        for (unit, expected) in code["lines"].as_array().unwrap().iter().enumerate() {
            let expected = expected.as_u64().map(|l| l as u32);
            assert_eq!(
                linetable::line_for(&table, first, unit as u32),
                expected,
                "code unit {unit} of the code object at line {first}"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked} code units");
}

/// A process image made of byte buffers, for reading objects without a process.
struct FakeMemory(Vec<(u64, Vec<u8>)>);

impl code::Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        for (start, bytes) in &self.0 {
            let Some(offset) = addr.checked_sub(*start) else {
                continue;
            };
            let offset = offset as usize;
            if let Some(src) = bytes.get(offset..offset + buf.len()) {
                buf.copy_from_slice(src);
                return Ok(());
            }
        }
        Err(std::io::Error::from_raw_os_error(libc::EIO))
    }
}

/// A compact str object as CPython 3.11 lays it out (header from the pyenv DWARF layout).
fn fake_str(layout: &frames::FrameLayout, text: &str) -> Vec<u8> {
    let max = text.chars().map(u32::from).max().unwrap_or(0);
    let (kind, ascii) = match max {
        0..=0x7f => (1u32, true),
        0x80..=0xff => (1, false),
        0x100..=0xffff => (2, false),
        _ => (4, false),
    };
    let data_at = if ascii {
        layout.str_ascii_data
    } else {
        layout.str_compact_data
    } as usize;
    let mut obj = vec![0u8; data_at];
    let len = text.chars().count() as u64;
    obj[layout.str_length as usize..][..8].copy_from_slice(&len.to_le_bytes());
    let state = (kind << layout.str_kind_bits.0)
        | (1 << layout.str_compact_bit)
        | (u32::from(ascii) << layout.str_ascii_bit)
        | (1 << 7);
    obj[layout.str_state as usize..][..4].copy_from_slice(&state.to_le_bytes());
    for c in text.chars() {
        let c = u32::from(c);
        obj.extend_from_slice(&c.to_le_bytes()[..kind as usize]);
    }
    obj.push(0);
    obj
}

/// Check that code objects, their strings (ASCII, Latin-1, UCS-2 and UCS-4) and location
/// tables are read from process memory with the DWARF layout, and that damaged objects give
/// errors, not panics or garbage.
#[test]
fn read_code_objects_from_memory() {
    for (_, py) in each_interpreter("read_code_objects_from_memory") {
        read_code_objects(&py.frame_layout().unwrap());
    }
}

fn read_code_objects(layout: &frames::FrameLayout) {
    let layout = *layout;
    let code_at = 0x1000u64;
    let mut code_obj = vec![0u8; layout.code_size as usize + 16];
    let put = |obj: &mut Vec<u8>, offset: u64, value: u64| {
        obj[offset as usize..][..8].copy_from_slice(&value.to_le_bytes());
    };
    put(&mut code_obj, layout.code_name, 0x2000);
    put(&mut code_obj, layout.code_qualname, 0x3000);
    put(&mut code_obj, layout.code_filename, 0x4000);
    put(&mut code_obj, layout.code_linetable, 0x5000);
    code_obj[layout.code_firstlineno as usize..][..4].copy_from_slice(&41i32.to_le_bytes());
    code_obj[layout.code_firsttraceable as usize..][..4].copy_from_slice(&2i32.to_le_bytes());
    // Two entries: 3 units on line 41 (short form), then 2 units one line down.
    let table = [0x80 | 2, 0x00, 0x80 | (11 << 3) | 1, 4, 8];
    let mut bytes_obj = vec![0u8; layout.bytes_data as usize];
    put(&mut bytes_obj, layout.var_size, table.len() as u64);
    bytes_obj.extend_from_slice(&table);
    bytes_obj.push(0);
    let mem = FakeMemory(vec![
        (code_at, code_obj.clone()),
        (0x2000, fake_str(&layout, "f")),
        (0x3000, fake_str(&layout, "Klasse.café_€_𝄞")),
        (0x4000, fake_str(&layout, "/src/app.py")),
        (0x5000, bytes_obj),
    ]);
    let info = code::read_code(&mem, &layout, code_at).unwrap();
    assert_eq!(info.qualname, "Klasse.café_€_𝄞");
    assert_eq!(info.filename, "/src/app.py");
    assert_eq!(info.firstlineno, 41);
    assert_eq!(info.linetable, table);
    assert_eq!(
        (0..6).map(|unit| info.line(unit * 2)).collect::<Vec<_>>(),
        [Some(41), Some(41), Some(41), Some(42), Some(42), None]
    );
    assert!(info.is_incomplete(2) && !info.is_incomplete(4));
    assert_eq!(
        code::identity(&mem, &layout, code_at).unwrap(),
        info.identity
    );
    for text in ["x", "é", "€uro", "𝄞"] {
        let mem = FakeMemory(vec![(0x10, fake_str(&layout, text))]);
        assert_eq!(code::read_str(&mem, &layout, 0x10).unwrap(), text);
    }
    // Unreadable, not compact, absurd lengths.
    assert!(code::read_code(&mem, &layout, 0x9000).is_err());
    let mut legacy = fake_str(&layout, "abc");
    legacy[layout.str_state as usize] &= !(1 << layout.str_compact_bit);
    let mem2 = FakeMemory(vec![(0x10, legacy)]);
    assert!(code::read_str(&mem2, &layout, 0x10).is_err());
    let mut huge = fake_str(&layout, "abc");
    huge[layout.str_length as usize..][..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mem3 = FakeMemory(vec![(0x10, huge)]);
    assert!(code::read_str(&mem3, &layout, 0x10).is_err());
}

/// Check the interpreter search: an `ALLOCTRACE_TEST_PYTHONS` list keeps only what it names
/// (a path that does not run is rejected with the reason), the expected versions it lacks are
/// named with how to install them, with `CI=true` that fails and otherwise the tests skip them;
/// and symbol tables are told apart (pyenv's libpython has one, Debian's python3.11 none).
#[test]
fn interpreter_discovery() {
    let all = discovery().for_tests("interpreter_discovery");
    let Some(first) = all.first() else {
        return;
    };
    let list = format!("{}:/nonexistent/python3.99", first.exe.display());
    let only = installed::Discovery::from_list(&list);
    assert_eq!(only.found.len(), 1, "{only:?}");
    assert_eq!(only.found[0].exe, first.exe);
    assert_eq!(only.found[0].found_by, installed::LIST_VAR);
    assert_eq!(only.rejected.len(), 1);
    assert!(only.rejected[0].1.contains("does not run"), "{only:?}");
    let missing = only.missing();
    assert_eq!(missing.len(), installed::EXPECTED.len() - 1, "{missing:?}");
    assert!(
        missing
            .iter()
            .all(|l| l.contains("ALLOCTRACE_TEST_PYTHONS"))
    );
    assert_eq!(only.required("t", false).len(), 1);
    let ci = std::panic::catch_unwind(|| {
        let _ = only.required("t", true);
    });
    let message = ci.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.starts_with("t: CI=true and no CPython 3."),
        "{message}"
    );
    assert!(installed::has_symtab(&first.interpreter_file));
    assert!(!installed::has_symtab(&require(DEBIAN_311)));
    assert!(!installed::has_symtab(Path::new("/nonexistent")));
}
