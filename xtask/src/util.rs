//! Helpers shared by the tasks: running commands, locating the workspace and the tools folder.

use std::{
    env,
    ffi::OsStr,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Where `setup` installs tools (bpf-linker, Go, the Python venv). Outside the clone, so CI and
/// fresh clones reuse it as a cache; override with `ALLOCTRACE_TOOLS`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = env::var_os("ALLOCTRACE_TOOLS") {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/alloctrace")
}

/// Runs a command with inherited stdio; fails with the command line if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its stdout, or None if it could not run or failed.
pub fn output(program: impl AsRef<OsStr>, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

/// `cargo build --release` of the tracer with the eBPF object required.
pub fn build_release() -> anyhow::Result<()> {
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--package", "tracer"])
        .env("ALLOCTRACE_BUILD_EBPF", "1")
        .current_dir(workspace()))
}

/// The cargo target directory.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Path of the release `alloctrace` binary.
pub fn alloctrace_bin() -> PathBuf {
    target_dir().join("release/alloctrace")
}

/// `cargo build` (dev profile) of the tracer with the eBPF object required; returns the binary.
pub fn build_debug() -> anyhow::Result<PathBuf> {
    run(Command::new(env!("CARGO"))
        .args(["build", "--package", "tracer"])
        .env("ALLOCTRACE_BUILD_EBPF", "1")
        .current_dir(workspace()))?;
    Ok(target_dir().join("debug/alloctrace"))
}
