//! `cargo xtask targets`: builds the workload targets of `targets/` (Rust, Go 1.19 and 1.27, C++,
//! Python) with frame pointers into `target/targets/bin/` and writes
//! `target/targets/manifest.json`, the list of runnables (language × variant, command template,
//! environment, supported scenarios, default sizes) that the suite iterates over.
//!
//! Incremental: cargo and `go build` keep their own caches under `target/targets/build/`; the C++
//! binary and the Python script are redone only when their source or flags changed.
//! `--check` then runs `targets/check.py`: every runnable × scenario at a tiny size, with the
//! JSON line's shape and the counters that must agree across languages compared.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::{Context as _, bail};

use crate::{
    setup, toolchains,
    util::{self, target_dir, workspace},
};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Output folder (default: `targets/` in the cargo target directory, or `ALLOCTRACE_TARGETS_DIR`).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Rebuild the C++ and Go binaries and recopy the Python script even if up to date.
    #[arg(long)]
    pub force: bool,
    /// After building, run every runnable × scenario at a tiny size and compare the counters
    /// across languages (`targets/check.py`).
    #[arg(long)]
    pub check: bool,
}

/// Flags for the C++ target (and the C parts of the Rust allocator crates).
const CXXFLAGS: &[&str] = &[
    "-std=c++20",
    "-O2",
    "-g",
    "-fno-omit-frame-pointer",
    "-mno-omit-leaf-frame-pointer",
    "-pthread",
];
const CFLAGS: &str = "-O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer";
const RUSTFLAGS: &str = "-C force-frame-pointers=yes";

/// Global allocators of the Rust target: (cargo feature, binary). `system` needs no feature.
const RUST_ALLOCATORS: [(&str, &str); 3] = [
    ("", "alloc-rust-system"),
    ("mimalloc", "alloc-rust-mimalloc"),
    ("jemalloc", "alloc-rust-jemalloc"),
];

/// Where `cargo xtask targets` puts its outputs.
pub fn out_dir() -> PathBuf {
    std::env::var_os("ALLOCTRACE_TARGETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("targets"))
}

/// The manifest the suite reads.
pub fn manifest_path() -> PathBuf {
    out_dir().join("manifest.json")
}

/// One way to run the scenarios: a binary (or interpreter + script), its variant arguments and
/// its environment.
#[derive(Debug)]
struct Runnable {
    id: String,
    lang: &'static str,
    /// The variant the program must report (checked against its `--list` line).
    variant: String,
    program: Vec<String>,
    variant_args: Vec<String>,
    env: Vec<(String, String)>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let out = args.out_dir.clone().unwrap_or_else(out_dir);
    let bin = out.join("bin");
    let build = out.join("build");
    fs::create_dir_all(&bin)?;
    fs::create_dir_all(&build)?;
    let src = workspace().join("targets");

    setup::ensure_apt_packages(&["g++"])?;
    let go = toolchains::ensure_go()?;
    let python = toolchains::python();

    let mut runnables = Vec::new();
    runnables.extend(build_rust(&src.join("rust"), &build.join("rust"), &bin)?);
    runnables.extend(build_cpp(&src.join("cpp"), &build, &bin, args.force)?);
    runnables.extend(build_go(&src.join("go"), &build, &bin, &go, args.force)?);
    runnables.extend(install_python(
        &src.join("python"),
        &bin,
        &python,
        args.force,
    )?);

    let manifest = manifest(&out, &runnables)?;
    let path = out.join("manifest.json");
    write_if_changed(&path, manifest.as_bytes())?;
    eprintln!(
        "targets: {} runnables in {}",
        runnables.len(),
        bin.display()
    );
    eprintln!("targets: manifest {}", path.display());

    if args.check {
        util::run(Command::new(&python).arg(src.join("check.py")).arg(&path))?;
    }
    Ok(())
}

// --- builds ---------------------------------------------------------------------------------

fn build_rust(src: &Path, target_dir: &Path, bin: &Path) -> anyhow::Result<Vec<Runnable>> {
    let cargo = |features: &[&str]| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--release",
            "--locked",
            "--bins",
            "--manifest-path",
        ])
        .arg(src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTFLAGS", RUSTFLAGS)
        .env("CFLAGS", CFLAGS)
        .env("CXXFLAGS", CFLAGS)
        // cargo run sets these for xtask itself; they must not leak into this build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
        if !features.is_empty() {
            cmd.args(["--no-default-features", "--features", &features.join(",")]);
        }
        cmd
    };
    // jemalloc builds its C sources with autoconf and make; should that fail, keep the others.
    let mut built: Vec<&str> = vec!["", "mimalloc", "jemalloc"];
    if util::run(&mut cargo(&[])).is_err() {
        eprintln!(
            "targets: the Rust target with every allocator failed to build; retrying without jemalloc"
        );
        built = vec!["", "mimalloc"];
        util::run(&mut cargo(&["mimalloc"])).context("building targets/rust")?;
    }
    let mut runnables = Vec::new();
    for (feature, name) in RUST_ALLOCATORS {
        if !built.contains(&feature) {
            eprintln!("targets: WARNING: {name} was not built");
            continue;
        }
        let exe = bin.join(name);
        copy_if_changed(&target_dir.join("release").join(name), &exe)?;
        let allocator = name.trim_start_matches("alloc-rust-");
        runnables.push(Runnable {
            id: format!("rust-{allocator}"),
            lang: "rust",
            variant: allocator.to_string(),
            program: vec![path_str(&exe)],
            variant_args: vec![],
            env: vec![],
        });
        if allocator == "system" {
            runnables.push(Runnable {
                id: "rust-arena".into(),
                lang: "rust",
                variant: "system+arena".into(),
                program: vec![path_str(&exe)],
                variant_args: vec!["--variant".into(), "arena".into()],
                env: vec![],
            });
        }
    }
    Ok(runnables)
}

fn build_cpp(src: &Path, build: &Path, bin: &Path, force: bool) -> anyhow::Result<Vec<Runnable>> {
    let source = src.join("alloc_targets.cpp");
    let exe = bin.join("alloc-cpp");
    let compiler = "g++";
    let version = util::output(compiler, &["-dumpfullversion"]).unwrap_or_default();
    let stamp = build.join("alloc-cpp.flags");
    let stamp_text = format!("{compiler} {} {}\n", version.trim(), CXXFLAGS.join(" "));
    let fresh = !force
        && fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text)
        && is_newer_than(&exe, std::slice::from_ref(&source));
    if !fresh {
        eprintln!("targets: compiling {}", exe.display());
        util::run(
            Command::new(compiler)
                .args(CXXFLAGS)
                .args(["-Wall", "-Wextra", "-o"])
                .arg(&exe)
                .arg(&source),
        )?;
        fs::write(&stamp, stamp_text)?;
    }
    Ok(["new", "pmr-pool", "pmr-monotonic"]
        .into_iter()
        .map(|variant| Runnable {
            id: format!("cpp-{variant}"),
            lang: "cpp",
            variant: variant.to_string(),
            program: vec![path_str(&exe)],
            variant_args: vec!["--variant".into(), variant.into()],
            env: vec![],
        })
        .collect())
}

fn build_go(
    src: &Path,
    build: &Path,
    bin: &Path,
    go: &toolchains::GoToolchains,
    force: bool,
) -> anyhow::Result<Vec<Runnable>> {
    let mut sources = files_with_ext(src, "go")?;
    sources.push(src.join("go.mod"));
    let mut runnables = Vec::new();
    for (name, go_cmd) in go.all() {
        let exe = bin.join(format!("alloc-{name}"));
        let mut inputs = sources.clone();
        inputs.push(go_cmd.to_path_buf());
        if force || !is_newer_than(&exe, &inputs) {
            eprintln!(
                "targets: building {} with {}",
                exe.display(),
                go_cmd.display()
            );
            let mut cmd = Command::new(go_cmd);
            toolchains::go_env(&mut cmd)
                .env("GOCACHE", build.join(format!("go-cache-{name}")))
                .env("GOPATH", build.join("gopath"))
                .env("CGO_ENABLED", "0")
                .args(["build", "-o"])
                .arg(&exe)
                .arg(".")
                .current_dir(src);
            util::run(&mut cmd)?;
        }
        for gogc in ["100", "50", "200"] {
            runnables.push(Runnable {
                id: format!("{name}-gogc{gogc}"),
                lang: "go",
                variant: format!("gogc{gogc}"),
                program: vec![path_str(&exe)],
                variant_args: vec![],
                env: vec![("GOGC".into(), gogc.into())],
            });
        }
        runnables.push(Runnable {
            id: format!("{name}-pool"),
            lang: "go",
            variant: "gogc100+pool".into(),
            program: vec![path_str(&exe)],
            variant_args: vec!["--variant".into(), "pool".into()],
            env: vec![("GOGC".into(), "100".into())],
        });
    }
    Ok(runnables)
}

fn install_python(
    src: &Path,
    bin: &Path,
    python: &Path,
    force: bool,
) -> anyhow::Result<Vec<Runnable>> {
    let script = bin.join("alloc-python.py");
    if force {
        let _ = fs::remove_file(&script);
    }
    copy_if_changed(&src.join("alloc_targets.py"), &script)?;
    let env = |allocator: &str| {
        vec![
            ("PYTHONMALLOC".to_string(), allocator.to_string()),
            ("PYTHONHASHSEED".into(), "0".into()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ]
    };
    let program = vec![path_str(python), path_str(&script)];
    Ok(vec![
        Runnable {
            id: "python-pymalloc".into(),
            lang: "python",
            variant: "pymalloc".into(),
            program: program.clone(),
            variant_args: vec![],
            env: env("pymalloc"),
        },
        Runnable {
            id: "python-malloc".into(),
            lang: "python",
            variant: "malloc".into(),
            program: program.clone(),
            variant_args: vec![],
            env: env("malloc"),
        },
        Runnable {
            id: "python-slots".into(),
            lang: "python",
            variant: "pymalloc+slots".into(),
            program,
            variant_args: vec!["--variant".into(), "slots".into()],
            env: env("pymalloc"),
        },
    ])
}

// --- manifest -------------------------------------------------------------------------------

/// What a program says about itself with `--list`.
struct Listing {
    toolchain: String,
    scenarios: Vec<String>,
    default_sizes: BTreeMap<String, u64>,
}

fn list(r: &Runnable) -> anyhow::Result<Listing> {
    let mut cmd = Command::new(&r.program[0]);
    cmd.args(&r.program[1..])
        .arg("--list")
        .args(&r.variant_args)
        .stderr(Stdio::inherit());
    for (k, v) in &r.env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout.lines().count() != 1 {
        bail!(
            "{cmd:?} --list failed ({}) or did not print one line: {stdout:?}",
            out.status
        );
    }
    let value =
        json::parse(stdout.trim()).with_context(|| format!("{} --list printed bad JSON", r.id))?;
    let field = |name: &str| {
        value
            .get(name)
            .with_context(|| format!("{} --list: no {name}", r.id))
    };
    let text = |name: &str| -> anyhow::Result<String> {
        field(name)?
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} --list: {name} is not a string", r.id))
    };
    if text("lang")? != r.lang || text("variant")? != r.variant {
        bail!(
            "{} --list reports {:?}/{:?}, expected {}/{}",
            r.id,
            text("lang")?,
            text("variant")?,
            r.lang,
            r.variant
        );
    }
    let scenarios = field("scenarios")?
        .as_array()
        .context("scenarios is not an array")?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .context("scenario name is not a string")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let default_sizes = field("default_sizes")?
        .as_object()
        .context("default_sizes is not an object")?
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.as_u64().context("default size is not an integer")?,
            ))
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    Ok(Listing {
        toolchain: text("toolchain")?,
        scenarios,
        default_sizes,
    })
}

/// The manifest: see targets/README.md ("Manifest").
fn manifest(out: &Path, runnables: &[Runnable]) -> anyhow::Result<String> {
    use json::quote;
    let listings = runnables
        .iter()
        .map(list)
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Scenario order as the first program lists them; compare_size = the smallest default, i.e.
    // a size every runnable finishes in its time budget.
    let mut order: Vec<String> = Vec::new();
    let mut compare: BTreeMap<String, u64> = BTreeMap::new();
    for l in &listings {
        for s in &l.scenarios {
            if !order.contains(s) {
                order.push(s.clone());
            }
            let size = l.default_sizes.get(s).copied().unwrap_or(u64::MAX);
            compare
                .entry(s.clone())
                .and_modify(|c| *c = (*c).min(size))
                .or_insert(size);
        }
    }
    let mut m = String::new();
    let _ = writeln!(m, "{{");
    let _ = writeln!(m, "  \"schema\": 1,");
    let _ = writeln!(m, "  \"generated_by\": \"cargo xtask targets\",");
    let _ = writeln!(m, "  \"out_dir\": {},", quote(&path_str(out)));
    let _ = writeln!(
        m,
        "  \"placeholders\": [\"{{scenario}}\", \"{{size}}\", \"{{seed}}\", \"{{threads}}\"],"
    );
    let _ = writeln!(m, "  \"scenarios\": [");
    for (i, s) in order.iter().enumerate() {
        let comma = if i + 1 < order.len() { "," } else { "" };
        let _ = writeln!(
            m,
            "    {{\"name\": {}, \"compare_size\": {}}}{comma}",
            quote(s),
            compare[s]
        );
    }
    let _ = writeln!(m, "  ],");
    let _ = writeln!(m, "  \"runnables\": [");
    for (i, (r, l)) in runnables.iter().zip(&listings).enumerate() {
        let mut command: Vec<String> = r.program.clone();
        command.extend(
            [
                "{scenario}",
                "--size",
                "{size}",
                "--seed",
                "{seed}",
                "--threads",
                "{threads}",
            ]
            .map(String::from),
        );
        command.extend(r.variant_args.iter().cloned());
        let list_str = |v: &[String]| v.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ");
        let env = r
            .env
            .iter()
            .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let sizes = l
            .default_sizes
            .iter()
            .map(|(k, v)| format!("{}: {v}", quote(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(m, "    {{");
        let _ = writeln!(m, "      \"id\": {},", quote(&r.id));
        let _ = writeln!(m, "      \"lang\": {},", quote(r.lang));
        let _ = writeln!(m, "      \"variant\": {},", quote(&r.variant));
        let _ = writeln!(m, "      \"toolchain\": {},", quote(&l.toolchain));
        let _ = writeln!(m, "      \"exe\": {},", quote(&r.program[0]));
        let _ = writeln!(m, "      \"command\": [{}],", list_str(&command));
        let _ = writeln!(m, "      \"env\": {{{env}}},");
        let _ = writeln!(m, "      \"scenarios\": [{}],", list_str(&l.scenarios));
        let _ = writeln!(m, "      \"default_sizes\": {{{sizes}}}");
        let _ = writeln!(
            m,
            "    }}{}",
            if i + 1 < runnables.len() { "," } else { "" }
        );
    }
    let _ = writeln!(m, "  ]");
    let _ = writeln!(m, "}}");
    Ok(m)
}

// --- files ----------------------------------------------------------------------------------

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Whether `output` exists and is newer than every input.
fn is_newer_than(output: &Path, inputs: &[PathBuf]) -> bool {
    let Some(out) = mtime(output) else {
        return false;
    };
    inputs.iter().all(|i| mtime(i).is_some_and(|t| t <= out))
}

fn files_with_ext(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// Copies `from` to `to` unless `to` already has the same bytes (keeps its mtime otherwise).
fn copy_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let data = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    if fs::read(to).is_ok_and(|old| old == data) {
        return Ok(());
    }
    let tmp = to.with_extension("tmp");
    fs::write(&tmp, &data)?;
    fs::set_permissions(&tmp, fs::metadata(from)?.permissions())?;
    fs::rename(&tmp, to).with_context(|| format!("cannot replace {}", to.display()))
}

fn write_if_changed(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

/// Just enough JSON to read the targets' `--list` lines (xtask has no JSON dependency).
mod json {
    use std::fmt::Write as _;

    use anyhow::{Context as _, bail};

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            self.as_object()?
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        }
        pub fn as_str(&self) -> Option<&str> {
            if let Value::String(s) = self {
                Some(s)
            } else {
                None
            }
        }
        pub fn as_array(&self) -> Option<&[Value]> {
            if let Value::Array(a) = self {
                Some(a)
            } else {
                None
            }
        }
        pub fn as_object(&self) -> Option<&[(String, Value)]> {
            if let Value::Object(o) = self {
                Some(o)
            } else {
                None
            }
        }
        pub fn as_u64(&self) -> Option<u64> {
            match self {
                Value::Number(n) if *n >= 0.0 && n.fract() == 0.0 && *n < 9.0e15 => Some(*n as u64),
                _ => None,
            }
        }
    }

    /// A JSON string literal.
    pub fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    pub fn parse(text: &str) -> anyhow::Result<Value> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            bail!("trailing characters at byte {}", p.i);
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> anyhow::Result<()> {
            self.ws();
            if self.s.get(self.i) != Some(&c) {
                bail!("expected {:?} at byte {}", c as char, self.i);
            }
            self.i += 1;
            Ok(())
        }

        fn literal(&mut self, word: &str, v: Value) -> anyhow::Result<Value> {
            if !self.s[self.i..].starts_with(word.as_bytes()) {
                bail!("bad literal at byte {}", self.i);
            }
            self.i += word.len();
            Ok(v)
        }

        fn value(&mut self) -> anyhow::Result<Value> {
            self.ws();
            match self.s.get(self.i).context("unexpected end of JSON")? {
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Object(fields));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.eat(b':')?;
                        fields.push((key, self.value()?));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Object(fields));
                            }
                            _ => bail!("expected ',' or '}}' at byte {}", self.i),
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Array(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Array(items));
                            }
                            _ => bail!("expected ',' or ']' at byte {}", self.i),
                        }
                    }
                }
                b'"' => Ok(Value::String(self.string()?)),
                b't' => self.literal("true", Value::Bool(true)),
                b'f' => self.literal("false", Value::Bool(false)),
                b'n' => self.literal("null", Value::Null),
                _ => {
                    let start = self.i;
                    while self
                        .s
                        .get(self.i)
                        .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                    {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i])?;
                    Ok(Value::Number(
                        text.parse()
                            .with_context(|| format!("bad number {text:?}"))?,
                    ))
                }
            }
        }

        fn string(&mut self) -> anyhow::Result<String> {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                let c = *self.s.get(self.i).context("unterminated string")?;
                self.i += 1;
                match c {
                    b'"' => return Ok(String::from_utf8(out)?),
                    b'\\' => {
                        let e = *self.s.get(self.i).context("unterminated escape")?;
                        self.i += 1;
                        match e {
                            b'n' => out.push(b'\n'),
                            b't' => out.push(b'\t'),
                            b'r' => out.push(b'\r'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let hex = std::str::from_utf8(
                                    self.s.get(self.i..self.i + 4).context("short \\u")?,
                                )?;
                                let code = u32::from_str_radix(hex, 16)?;
                                self.i += 4;
                                let ch = char::from_u32(code).unwrap_or('\u{fffd}');
                                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                            }
                            other => out.push(other),
                        }
                    }
                    c => out.push(c),
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_a_list_line() {
            let v = parse(r#"{"lang":"go","scenarios":["a","b"],"default_sizes":{"a":18,"b":3000000},"x":[true,null,-1.5e2,"q\"\u0041"]}"#)
                .unwrap();
            assert_eq!(v.get("lang").and_then(Value::as_str), Some("go"));
            assert_eq!(
                v.get("scenarios")
                    .and_then(Value::as_array)
                    .map(<[Value]>::len),
                Some(2)
            );
            assert_eq!(
                v.get("default_sizes")
                    .and_then(|d| d.get("b"))
                    .and_then(Value::as_u64),
                Some(3_000_000)
            );
            assert_eq!(
                v.get("x").and_then(Value::as_array).map(<[Value]>::to_vec),
                Some(vec![
                    Value::Bool(true),
                    Value::Null,
                    Value::Number(-150.0),
                    Value::String("q\"A".into())
                ])
            );
            assert!(parse("{\"a\":1} x").is_err());
            assert!(parse("[1,").is_err());
        }

        #[test]
        fn quotes() {
            assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        }
    }
}
