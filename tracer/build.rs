//! Builds `tracer-ebpf` for the BPF target and embeds the object in the `alloctrace` binary.
//!
//! Written by hand rather than with aya-build 0.2.0 because the project installs bpf-linker in
//! its own tools directory (see `cargo xtask setup`), which aya-build cannot be pointed at
//! without editing PATH for the whole build.
//!
//! Without bpf-linker the build still succeeds (so `cargo check` and the unprivileged tests work
//! on any machine) but embeds an empty object, and `alloctrace record` says how to fix that.
//! `ALLOCTRACE_BUILD_EBPF=1` turns the missing toolchain into a build error instead.

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let workspace = manifest_dir
        .parent()
        .context("tracer/ has no parent")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("tracer-ebpf.o");

    for path in [
        "tracer-ebpf/src",
        "tracer-ebpf/Cargo.toml",
        "tracer-common/src",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    for var in ["ALLOCTRACE_BUILD_EBPF", "ALLOCTRACE_TOOLS", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let required = env::var("ALLOCTRACE_BUILD_EBPF").is_ok_and(|v| v == "1");
    let Some(linker_dir) = find_bpf_linker() else {
        if required {
            bail!("bpf-linker not found (run `cargo xtask setup`)");
        }
        println!(
            "cargo:warning=bpf-linker not found: building alloctrace without eBPF programs; \
             run `cargo xtask setup` to install it"
        );
        fs::write(&object, [])?;
        return Ok(());
    };

    // Under OUT_DIR, which is private to this checkout and profile: checkouts sharing one
    // CARGO_TARGET_DIR (worktrees, CI clones) would otherwise overwrite each other's object.
    let target_dir = out_dir.join("ebpf-target");
    build_ebpf(&workspace, &target_dir, &linker_dir)?;
    let built = target_dir.join("bpfel-unknown-none/release/tracer-ebpf");
    fs::copy(&built, &object).with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}

/// The directory holding `bpf-linker`: the project's tools directory first, then PATH.
fn find_bpf_linker() -> Option<PathBuf> {
    let tools = env::var_os("ALLOCTRACE_TOOLS")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/alloctrace")));
    let mut candidates: Vec<PathBuf> = tools
        .into_iter()
        .map(|t| t.join("bpf-linker/bin"))
        .collect();
    if let Some(path) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("bpf-linker").is_file())
}

fn build_ebpf(workspace: &Path, target_dir: &Path, linker_dir: &Path) -> anyhow::Result<()> {
    let mut path = OsString::from(linker_dir);
    if let Some(old) = env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    // aya-ebpf reads `bpf_target_arch`; BTF (-Clink-arg=--btf, with debuginfo) lets the loader
    // relocate against the running kernel.
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f");
    let output = Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--package",
            "tracer-ebpf",
            "--release",
        ])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace)
        .env("PATH", path)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer build's compiler and wrappers are the stable host ones.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .output()
        .context("running `rustup run nightly cargo build` for tracer-ebpf")?;
    // Cargo hides a build script's output unless it fails; surface the eBPF crate's warnings.
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr
        .lines()
        .filter(|l| l.starts_with("warning") || l.trim_start().starts_with("-->"))
    {
        println!("cargo:warning=tracer-ebpf: {line}");
    }
    if !output.status.success() {
        eprintln!("{stderr}");
        bail!(
            "building tracer-ebpf failed ({}); run `cargo xtask setup` if the toolchain is missing",
            output.status
        );
    }
    Ok(())
}
