//! Symbolization and exports on real traces: programs with three known allocating call paths
//! are recorded with the real tracer, symbolized from the files on disk, and their call sites,
//! exports and degraded cases (stripped binary, changed or missing file) are checked.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use analysis::{
    report::{self, Options},
    symbolize::{self, FrameRow, StackFrames, Status},
};
use trace_format::schema;

use super::common::{alloctrace, assert_success, build, record, tempdir};

const GO: &str = "/usr/lib/go-1.19/bin/go";

fn source_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// The line of `source` that carries `marker`.
fn marker_line(source: &str, marker: &str) -> u32 {
    let text = fs::read_to_string(source_path(source)).unwrap();
    let index = text
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker} not in {source}"));
    index as u32 + 1
}

/// Records `command` into a fresh trace directory and checks it succeeded.
fn record_ok(command: &[&dyn AsRef<std::ffi::OsStr>]) -> tempfile::TempDir {
    let dir = tempdir();
    let out = record(dir.path(), command);
    assert!(
        out.status.success(),
        "record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join(schema::STACKS_FILE).exists());
    dir
}

/// Runs `alloctrace symbolize` on `dir` (with `extra` arguments); returns its stdout.
fn symbolize_cli(dir: &Path, extra: &[&str]) -> String {
    let started = Instant::now();
    let out = alloctrace()
        .arg("symbolize")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "symbolize failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture: the measured symbolization time of each test trace.
    eprintln!(
        "alloctrace symbolize {} ({:.2} s wall): {stdout}",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    stdout
}

/// The report's call sites, symbolized, largest first: (site label, bytes).
fn top_sites(dir: &Path) -> Vec<(String, u64)> {
    let mut report = report::build(dir, &Options::default()).unwrap();
    let frames = StackFrames::load(dir).unwrap().expect("frames.parquet");
    report.callsites.symbolize(&frames);
    assert!(report.callsites.symbolized);
    report
        .callsites
        .sites
        .iter()
        .map(|s| (s.site.clone().unwrap_or_default(), s.bytes))
        .collect()
}

/// Asserts that the three largest sites are the three paths' functions at their lines, and
/// returns their labels.
fn assert_three_paths(dir: &Path, source: &str, names: [&str; 3], file: &str) -> Vec<String> {
    let sites = top_sites(dir);
    let expected: Vec<String> = names
        .iter()
        .zip(["SITE_ALPHA", "SITE_BETA", "SITE_GAMMA"])
        .map(|(name, marker)| format!("{name} ({file}:{})", marker_line(source, marker)))
        .collect();
    let top: Vec<String> = sites.iter().take(3).map(|(s, _)| s.clone()).collect();
    assert_eq!(top, expected, "all sites: {sites:#?}");
    expected
}

/// Check that a C program with three allocating paths (malloc, calloc, malloc in distinct
/// functions), recorded by the real tracer and symbolized from the files on disk, has those
/// three functions at their exact lines as its top call sites, with their callers, that the
/// HTML report shows them, and that `go tool pprof -top` reads the pprof export and lists the
/// right functions for bytes allocated and for bytes live at the peak.
#[test]
fn c_three_paths_symbolized_and_exported() {
    let bin = build("three_paths.c", "gcc", &["-fno-optimize-sibling-calls"]);
    let dir = record_ok(&[&bin, &"300"]);
    let summary = symbolize_cli(dir.path(), &[]);
    assert!(summary.starts_with("symbolized "), "{summary}");
    let sites = assert_three_paths(
        dir.path(),
        "three_paths.c",
        ["make_alpha", "make_beta", "make_gamma"],
        "three_paths.c",
    );

    // Every frame of the program's own stacks resolved, callers included.
    let rows = symbolize::read_frames(dir.path()).unwrap();
    let exe = bin.to_string_lossy();
    let own: Vec<&FrameRow> = rows
        .iter()
        .filter(|r| r.module.as_deref() == Some(&*exe))
        .collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r.status == Status::Ok), "{own:#?}");
    let functions: Vec<&str> = own.iter().filter_map(|r| r.function.as_deref()).collect();
    for f in ["main", "run_alpha", "run_beta", "run_gamma"] {
        assert!(functions.contains(&f), "{f} not in {functions:?}");
    }

    // The HTML report picks frames.parquet up by itself.
    let html = dir.path().join("report.html");
    let out = alloctrace()
        .args(["report", "-q", "-o"])
        .arg(&html)
        .arg(dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    let page = fs::read_to_string(&html).unwrap();
    for site in &sites {
        assert!(page.contains(site.as_str()), "{site} not in the report");
    }
    assert!(
        page.contains("\"flame_alloc\":{"),
        "no allocation flame graph"
    );
    assert!(page.contains("\"flame_peak\":{"), "no peak flame graph");

    // pprof: default sample type (bytes allocated), sorted by cumulative bytes.
    let pb = dir.path().join("heap.pb.gz");
    let out = alloctrace()
        .args(["export", "--format", "pprof", "-o"])
        .arg(&pb)
        .arg(dir.path())
        .output()
        .unwrap();
    assert_success(&out);
    let top = go_pprof(&pb, &["-top", "-cum"]);
    let position = |name: &str| {
        top.lines()
            .position(|l| l.split_whitespace().last() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed by go tool pprof:\n{top}"))
    };
    assert!(top.contains("Type: alloc_space"), "{top}");
    assert!(position("main") < position("make_alpha"), "{top}");
    assert!(position("make_alpha") < position("make_beta"), "{top}");
    assert!(position("make_beta") < position("make_gamma"), "{top}");
    // At the live peak, alpha's temporary blocks are gone; beta's and half of gamma's remain.
    let peak = go_pprof(&pb, &["-sample_index=peak_inuse_space", "-top"]);
    assert!(peak.contains("Type: peak_inuse_space"), "{peak}");
    assert!(
        peak.contains("make_beta") && peak.contains("make_gamma"),
        "{peak}"
    );
    assert!(!peak.contains("make_alpha"), "{peak}");

    // Folded stacks: one line per path, outermost first, bytes as the weight: 300 × 4
    // allocations of 4 × (1000 + argc) bytes on alpha's path.
    let out = alloctrace()
        .args(["export", "--format", "folded", "-o", "-"])
        .arg(dir.path())
        .output()
        .unwrap();
    let folded = String::from_utf8(out.stdout).unwrap();
    assert!(
        folded
            .lines()
            .any(|l| l.contains("main;run_alpha;make_alpha;") && l.ends_with(" 4809600")),
        "{folded}"
    );

    // The pipeline `alloctrace export --help` and docs/stacks.md show, as a shell runs it.
    let svg = dir.path().join("alloc.svg");
    let pipeline = format!(
        "{} export {} --format folded -o - | {} > {}",
        env!("CARGO_BIN_EXE_alloctrace"),
        dir.path().display(),
        inferno_flamegraph().display(),
        svg.display()
    );
    let out = Command::new("sh").args(["-c", &pipeline]).output().unwrap();
    assert!(
        out.status.success(),
        "{pipeline}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("make_alpha"),
        "{svg:.300}"
    );
}

/// `inferno-flamegraph` as `cargo xtask setup` installs it (`ALLOCTRACE_TOOLS` overrides the
/// folder, as for bpf-linker).
fn inferno_flamegraph() -> std::path::PathBuf {
    let tools = std::env::var_os("ALLOCTRACE_TOOLS").map_or_else(
        || {
            Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/alloctrace")
        },
        Into::into,
    );
    let bin = tools.join("inferno/bin/inferno-flamegraph");
    assert!(
        bin.exists(),
        "{} missing: run `cargo xtask setup`",
        bin.display()
    );
    bin
}

/// Runs `go tool pprof` with `args` on `profile`; returns stdout.
fn go_pprof(profile: &Path, args: &[&str]) -> String {
    let out = Command::new(GO)
        .args(["tool", "pprof"])
        .args(args)
        .arg(profile)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("PPROF_TMPDIR", profile.parent().unwrap())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {GO}: {e} (cargo xtask setup installs golang-1.19-go)")
        });
    assert!(
        out.status.success(),
        "go tool pprof failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Check that a Rust program's three paths (Vec, Box, zeroed Vec, all through std's inlined
/// allocation plumbing) come out as demangled Rust paths at the program's own lines, past the
/// inlined standard-library frames, and that those inlined frames are in frames.parquet.
#[test]
fn rust_three_paths_demangled() {
    let bin = build("three_paths.rs", "rustc", &["-g"]);
    let dir = record_ok(&[&bin, &"200"]);
    symbolize_cli(dir.path(), &[]);
    assert_three_paths(
        dir.path(),
        "three_paths.rs",
        [
            "three_paths::paths::make_alpha",
            "three_paths::paths::make_beta",
            "three_paths::paths::make_gamma",
        ],
        "three_paths.rs",
    );
    let rows = symbolize::read_frames(dir.path()).unwrap();
    assert!(
        rows.iter()
            .filter_map(|r| r.function.as_deref())
            .all(|f| !f.starts_with("_ZN") && !f.starts_with("_R")),
        "mangled names left"
    );
    assert!(
        rows.iter().any(|r| r.inlined
            && r.function
                .as_deref()
                .is_some_and(|f| f.contains("with_capacity"))),
        "no inlined Vec::with_capacity frame"
    );
}

/// Check that a stripped binary (`-s`) degrades to module + offset with status `stripped` and
/// a summary line saying so, and that the same binary is fully symbolized when its separate
/// debug file is found by build id under a debug directory.
#[test]
fn stripped_binary_and_debug_file_by_build_id() {
    let full = build("three_paths.c", "gcc", &["-fno-optimize-sibling-calls"]);
    let work = tempdir();
    let stripped = work.path().join("three_paths_stripped");
    let status = Command::new("strip")
        .arg("-s")
        .arg("-o")
        .arg(&stripped)
        .arg(&full)
        .status()
        .unwrap();
    assert!(status.success());
    let dir = record_ok(&[&stripped, &"100"]);
    let summary = symbolize_cli(dir.path(), &["--debug-dir", "/nonexistent"]);
    assert!(summary.contains("stripped (no symbol table"), "{summary}");
    let rows = symbolize::read_frames(dir.path()).unwrap();
    let path = stripped.to_string_lossy();
    let own: Vec<&FrameRow> = rows
        .iter()
        .filter(|r| r.module.as_deref() == Some(&*path))
        .collect();
    assert!(own.len() >= 9, "{own:#?}");
    for r in &own {
        assert_eq!(r.status, Status::Stripped, "{r:?}");
        assert!(r.function.is_none() && r.module_offset.is_some(), "{r:?}");
    }
    let sites = top_sites(dir.path());
    assert!(
        sites[0].0.starts_with("three_paths_stripped+0x") && sites[0].0.ends_with("[stripped]"),
        "{sites:?}"
    );

    // The debug file, where the debuginfo packages put it: .build-id/ab/cdef….debug.
    let id = symbolize::read_frames(dir.path())
        .unwrap()
        .into_iter()
        .find_map(|r| (r.module.as_deref() == Some(&*path)).then_some(r.build_id))
        .flatten()
        .expect("build id recorded");
    let debug_dir = work.path().join("debug");
    let target = debug_dir
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    let status = Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&full)
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    symbolize_cli(dir.path(), &["--debug-dir", debug_dir.to_str().unwrap()]);
    assert_three_paths(
        dir.path(),
        "three_paths.c",
        ["make_alpha", "make_beta", "make_gamma"],
        "three_paths.c",
    );
}

/// Check that a binary rebuilt after the trace (another build id at the same path) is
/// reported and its frames left unsymbolized, never resolved against the new file, and that a
/// deleted binary gives `missing_file`; the other modules (libc) still resolve.
#[test]
fn changed_or_missing_binary_is_never_guessed() {
    let work = tempdir();
    let bin = work.path().join("three_paths");
    let compile = |defines: &[&str]| {
        let status = Command::new("gcc")
            .args([
                "-O2",
                "-g",
                "-fno-omit-frame-pointer",
                "-fno-optimize-sibling-calls",
            ])
            .args(defines)
            .arg("-o")
            .arg(&bin)
            .arg(source_path("three_paths.c"))
            .status()
            .unwrap();
        assert!(status.success());
    };
    compile(&[]);
    let dir = record_ok(&[&bin, &"50"]);
    // Different code, hence a different build id, at the same path.
    compile(&["-DUNUSED_VARIANT=1", "-fno-inline-functions", "-O1"]);
    let summary = symbolize_cli(dir.path(), &[]);
    assert!(
        summary.contains("build id mismatch (recorded "),
        "{summary}"
    );
    let path = bin.to_string_lossy();
    let check =
        |status: Status| {
            let rows = symbolize::read_frames(dir.path()).unwrap();
            let own: Vec<&FrameRow> = rows
                .iter()
                .filter(|r| r.module.as_deref() == Some(&*path))
                .collect();
            assert!(!own.is_empty());
            for r in &own {
                assert_eq!(r.status, status, "{r:?}");
                assert!(r.function.is_none() && r.line.is_none(), "{r:?}");
            }
            assert!(rows.iter().any(|r| r.status == Status::Ok
                && r.module.as_deref().is_some_and(|m| m.contains("libc"))));
        };
    check(Status::BuildIdMismatch);
    fs::remove_file(&bin).unwrap();
    let summary = symbolize_cli(dir.path(), &[]);
    assert!(summary.contains("file missing or unreadable"), "{summary}");
    check(Status::MissingFile);
}

/// Check that a Go program's three allocating functions come out as its top call sites, by Go
/// function name and line, with Go 1.19 and 1.27, for normal builds and stripped ones (names
/// from .gopclntab).
#[test]
fn go_three_paths() {
    for (version, stripped) in [
        ("1.19", false),
        ("1.19", true),
        ("1.27", false),
        ("1.27", true),
    ] {
        let src = source_path("go_paths");
        let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "go_paths-{version}{}",
            if stripped { "-stripped" } else { "" }
        ));
        let mut cmd = super::golang::go_build(version, &src);
        if stripped {
            cmd.arg("-ldflags=-s -w");
        }
        assert!(cmd.arg("-o").arg(&bin).arg(".").status().unwrap().success());
        let dir = record_ok(&[&bin, &"300"]);
        let sites = top_sites(dir.path());
        let top: Vec<&str> = sites.iter().take(3).map(|(s, _)| s.as_str()).collect();
        for (name, marker) in [
            ("main.makeAlpha", "SITE_ALPHA"),
            ("main.makeBeta", "SITE_BETA"),
            ("main.makeGamma", "SITE_GAMMA"),
        ] {
            let line = marker_line("go_paths/main.go", marker);
            let expected = format!("{name} (");
            let site = top.iter().find(|s| s.starts_with(&expected)).unwrap_or_else(|| panic!("{name} not in the top sites (go {version}, stripped: {stripped}): {sites:#?}"));
            assert!(
                site.ends_with(&format!("main.go:{line})")),
                "{site}: expected line {line}"
            );
        }
    }
}
