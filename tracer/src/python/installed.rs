//! The CPython interpreters installed on this machine, as the tests and `cargo xtask` find them:
//! never a hard-coded path.
//!
//! Where to look: `ALLOCTRACE_TEST_PYTHONS` (interpreter paths separated by `:`, `,` or
//! whitespace) when set, and only there; otherwise pyenv's versions (`$PYENV_ROOT/versions`,
//! else `~/.pyenv/versions`) and then `python3.N` on `PATH`. Each candidate is run once to learn
//! its version and where its interpreter code lives (libpython for a shared build, the
//! executable itself otherwise), and that file is checked for a symbol table: without one
//! (Debian's stripped `python3.11`) alloctrace runs in its partial mode and the full-depth tests
//! do not apply.
//!
//! Std only: `xtask` compiles this file too (`#[path]`), so setup reports what the tests will
//! find with the same code.

use std::{
    collections::BTreeSet,
    env, fs,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::Command,
};

/// The CPython versions fully supported (allocators, collections, Python frames), which the
/// tests expect on the project's machine kind (pyenv 3.11.7, 3.12.1, 3.13.0). With `CI=true` a
/// missing one fails the tests; elsewhere it is skipped with the reason printed.
pub const EXPECTED: &[(u32, u32)] = &[(3, 11), (3, 12), (3, 13)];

/// The variable that replaces the search with a list of interpreters.
pub const LIST_VAR: &str = "ALLOCTRACE_TEST_PYTHONS";

/// One interpreter found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// The command to run (`…/bin/python3.12`).
    pub exe: PathBuf,
    /// `sys.version_info[:3]`.
    pub version: (u32, u32, u32),
    /// The file holding the interpreter's code: libpython for a shared build, else `exe`.
    pub interpreter_file: PathBuf,
    /// Whether that file has a symbol table (`.symtab`): full depth, not the partial mode.
    pub symtab: bool,
    /// Where it was found: `ALLOCTRACE_TEST_PYTHONS`, `pyenv` or `PATH`.
    pub found_by: &'static str,
}

impl Interpreter {
    /// `3.12.1`.
    pub fn version_text(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    /// `3.12`.
    pub fn minor_text(&self) -> String {
        format!("{}.{}", self.version.0, self.version.1)
    }

    /// Whether alloctrace traces it at full depth: a symbol table and a supported version.
    pub fn full_depth(&self) -> bool {
        self.symtab && EXPECTED.contains(&(self.version.0, self.version.1))
    }
}

/// What the search found, and the candidates it passed over with why.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub found: Vec<Interpreter>,
    pub rejected: Vec<(PathBuf, String)>,
    /// Where it looked, for messages.
    pub searched: String,
}

impl Discovery {
    /// Searches as the module docs say.
    pub fn run() -> Discovery {
        if let Some(list) = env::var_os(LIST_VAR).filter(|v| !v.is_empty()) {
            return Discovery::from_list(&list.to_string_lossy());
        }
        let root = pyenv_root();
        let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
        candidates.extend(pyenv_candidates(&root).into_iter().map(|p| (p, "pyenv")));
        candidates.extend(path_candidates().into_iter().map(|p| (p, "PATH")));
        Discovery::probe_all(candidates, format!("{}/*/bin and PATH", root.display()))
    }

    /// The interpreters of an `ALLOCTRACE_TEST_PYTHONS` value (paths separated by `:`, `,` or
    /// whitespace).
    pub fn from_list(list: &str) -> Discovery {
        let candidates = list
            .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| (PathBuf::from(s), LIST_VAR))
            .collect();
        Discovery::probe_all(candidates, format!("{LIST_VAR}={list}"))
    }

    fn probe_all(candidates: Vec<(PathBuf, &'static str)>, searched: String) -> Discovery {
        let mut out = Discovery {
            searched,
            ..Discovery::default()
        };
        let mut seen = BTreeSet::new();
        for (exe, found_by) in candidates {
            let key = fs::canonicalize(&exe).unwrap_or_else(|_| exe.clone());
            if !seen.insert(key) {
                continue;
            }
            match probe(&exe, found_by) {
                Ok(interpreter) => out.found.push(interpreter),
                Err(why) => out.rejected.push((exe, why)),
            }
        }
        out
    }

    /// The full-depth interpreters, one per minor version (the first found: pyenv before
    /// `PATH`), oldest first.
    pub fn full_depth(&self) -> Vec<&Interpreter> {
        let mut minors = BTreeSet::new();
        let mut out: Vec<&Interpreter> = self
            .found
            .iter()
            .filter(|i| i.full_depth() && minors.insert((i.version.0, i.version.1)))
            .collect();
        out.sort_by_key(|i| i.version);
        out
    }

    /// The full-depth interpreter of `major.minor`, if found.
    pub fn version(&self, major: u32, minor: u32) -> Option<&Interpreter> {
        self.full_depth()
            .into_iter()
            .find(|i| (i.version.0, i.version.1) == (major, minor))
    }

    /// One line per expected version that has no full-depth interpreter, saying how to get one.
    pub fn missing(&self) -> Vec<String> {
        EXPECTED
            .iter()
            .filter(|&&(a, b)| self.version(a, b).is_none())
            .map(|&(a, b)| {
                format!(
                    "no CPython {a}.{b} with a symbol table found (searched {}): install one \
                     with `PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {a}.{b}` or list \
                     interpreters in {LIST_VAR}",
                    self.searched
                )
            })
            .collect()
    }

    /// For tests: fails when `CI=true` and an expected version is missing, else prints each
    /// missing one as skipped. Returns the full-depth interpreters to run on.
    pub fn for_tests(&self, test: &str) -> Vec<&Interpreter> {
        self.required(test, env::var("CI").is_ok_and(|v| v == "true"))
    }

    /// [`Discovery::for_tests`] with the CI setting given.
    pub fn required(&self, test: &str, ci: bool) -> Vec<&Interpreter> {
        let missing = self.missing();
        if !missing.is_empty() && ci {
            panic!("{test}: CI=true and {}", missing.join("; "));
        }
        for line in &missing {
            eprintln!("{test}: skipped: {line}");
        }
        self.full_depth()
    }
}

fn pyenv_root() -> PathBuf {
    if let Some(root) = env::var_os("PYENV_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root).join("versions");
    }
    env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".pyenv/versions")
}

/// `<root>/<version>/bin/pythonX.Y` for each installed version named `X.Y.Z`.
fn pyenv_candidates(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let numbers: Vec<u32> = name.split('.').map_while(|p| p.parse().ok()).collect();
            let [major, minor, ..] = numbers[..] else {
                return None;
            };
            let exe = e.path().join(format!("bin/python{major}.{minor}"));
            exe.is_file().then_some((numbers, exe))
        })
        .collect();
    // Newest patch release first, so it is the one kept per minor version.
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out.into_iter().map(|(_, p)| p).collect()
}

/// `python3.N` in each `PATH` directory.
fn path_candidates() -> Vec<PathBuf> {
    let Some(paths) = env::var_os("PATH") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in env::split_paths(&paths) {
        // pyenv's shims run whichever version is selected, not a fixed one.
        if dir.to_string_lossy().contains("/shims") {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("python3."))
                    .is_some_and(|minor| {
                        !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .collect();
        names.sort();
        out.extend(names);
    }
    out
}

/// Runs `exe` once for its version and interpreter file.
fn probe(exe: &Path, found_by: &'static str) -> Result<Interpreter, String> {
    const SCRIPT: &str = "import sys, sysconfig, os\n\
        v = sys.version_info\n\
        lib = ''\n\
        if sysconfig.get_config_var('Py_ENABLE_SHARED'):\n\
        \x20   lib = os.path.join(sysconfig.get_config_var('LIBDIR') or '', \
        sysconfig.get_config_var('INSTSONAME') or '')\n\
        print(v[0], v[1], v[2])\n\
        print(lib)\n";
    let out = Command::new(exe)
        .args(["-I", "-c", SCRIPT])
        .output()
        .map_err(|e| format!("does not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "exits with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let numbers: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [major, minor, micro] = numbers[..] else {
        return Err(format!("printed no version: {text:?}"));
    };
    let lib = lines.next().unwrap_or_default().trim();
    let interpreter_file = if lib.is_empty() || !Path::new(lib).is_file() {
        exe.to_path_buf()
    } else {
        PathBuf::from(lib)
    };
    Ok(Interpreter {
        exe: exe.to_path_buf(),
        version: (major, minor, micro),
        symtab: has_symtab(&interpreter_file),
        interpreter_file,
        found_by,
    })
}

/// Whether the ELF file at `path` has a section of type `SHT_SYMTAB`. Read by hand from the
/// section headers (a few fixed offsets of the ELF64 little-endian format) so this module needs
/// nothing but std.
pub fn has_symtab(path: &Path) -> bool {
    const SHT_SYMTAB: u32 = 2;
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let mut header = [0u8; 64];
    if file.read_exact(&mut header).is_err() || &header[..4] != b"\x7fELF" || header[4] != 2 {
        return false;
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let shoff = u64::from_le_bytes(header[0x28..0x30].try_into().unwrap_or_default());
    let (entsize, count) = (
        usize::from(u16_at(&header, 0x3a)),
        usize::from(u16_at(&header, 0x3c)),
    );
    if entsize < 8 || count == 0 {
        return false;
    }
    let mut data = vec![0u8; entsize * count];
    if file.seek(SeekFrom::Start(shoff)).is_err() || file.read_exact(&mut data).is_err() {
        return false;
    }
    (0..count).any(|i| {
        let at = i * entsize;
        data.get(at + 4..at + 8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .is_some_and(|b| u32::from_le_bytes(b) == SHT_SYMTAB)
    })
}
