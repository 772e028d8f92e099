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

/// The one JSON line a target prints for `--list` (targets/README.md, "Manifest").
#[derive(Debug, serde::Deserialize)]
struct Listing {
    lang: String,
    variant: String,
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
    let listing: Listing = serde_json::from_str(stdout.trim())
        .with_context(|| format!("{} --list printed an unexpected line: {stdout:?}", r.id))?;
    if listing.lang != r.lang || listing.variant != r.variant {
        bail!(
            "{} --list reports {:?}/{:?}, expected {}/{}",
            r.id,
            listing.lang,
            listing.variant,
            r.lang,
            r.variant
        );
    }
    Ok(listing)
}

/// The manifest: see targets/README.md ("Manifest").
fn manifest(out: &Path, runnables: &[Runnable]) -> anyhow::Result<String> {
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
    let scenarios: Vec<serde_json::Value> = order
        .iter()
        .map(|s| serde_json::json!({"name": s, "compare_size": compare[s]}))
        .collect();
    let runnables: Vec<serde_json::Value> = runnables
        .iter()
        .zip(&listings)
        .map(|(r, l)| {
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
            let env: serde_json::Map<String, serde_json::Value> = r
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            serde_json::json!({
                "id": r.id,
                "lang": r.lang,
                "variant": r.variant,
                "toolchain": l.toolchain,
                "exe": r.program[0],
                "command": command,
                "env": env,
                "scenarios": l.scenarios,
                "default_sizes": l.default_sizes,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schema": 1,
        "generated_by": "cargo xtask targets",
        "out_dir": path_str(out),
        "placeholders": ["{scenario}", "{size}", "{seed}", "{threads}"],
        "scenarios": scenarios,
        "runnables": runnables,
    });
    Ok(serde_json::to_string_pretty(&manifest)? + "\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a target's `--list` line (as targets/README.md shows it) reads into a
    /// listing, and that a line missing a field is refused.
    #[test]
    fn reads_a_list_line() {
        let line = r#"{"lang":"go","variant":"gogc100","toolchain":"go1.27.3","scenarios":["churn","growth"],"default_sizes":{"churn":200000,"growth":5000}}"#;
        let listing: Listing = serde_json::from_str(line).expect("a valid line");
        assert_eq!(listing.lang, "go");
        assert_eq!(listing.scenarios, ["churn", "growth"]);
        assert_eq!(listing.default_sizes.get("growth"), Some(&5000));
        let missing = r#"{"lang":"go","variant":"gogc100","scenarios":[],"default_sizes":{}}"#;
        assert!(serde_json::from_str::<Listing>(missing).is_err());
    }
}
