//! The Go path of the symbolizer on real Go binaries built with Go 1.19 (the Debian package the
//! setup installs): normally (symbols and DWARF, read by blazesym) and with
//! `-ldflags='-s -w'` (no symbols, no DWARF: only `.gopclntab`, read by our own parser).

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use analysis::symbolize::{
    Options, Status,
    elf::{Frame, Resolved},
    symbolize_file_offsets,
};
use object::{Object, ObjectSegment, ObjectSymbol};

const GO: &str = "/usr/lib/go-1.19/bin/go";

const MAIN_GO: &str = r#"package main

//go:noinline
func makeAlpha(n int) []byte {
	return make([]byte, n) // SITE_ALPHA
}

//go:noinline
func makeBeta(n int) []int64 {
	return make([]int64, n) // SITE_BETA
}

func main() {
	total := 0
	for i := 0; i < 100; i++ {
		total += len(makeAlpha(4096+i)) + len(makeBeta(512+i))
	}
	println(total)
}
"#;

fn marker_line(marker: &str) -> u32 {
    MAIN_GO.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1
}

/// Builds the program with `ldflags`; returns the binary.
fn go_build(work: &Path, name: &str, ldflags: &str) -> PathBuf {
    let src = work.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("main.go"), MAIN_GO).unwrap();
    fs::write(src.join("go.mod"), "module gosym\n\ngo 1.19\n").unwrap();
    let bin = work.join(name);
    let out = Command::new(GO)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(format!("-ldflags={ldflags}"))
        .arg(".")
        .current_dir(&src)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {GO}: {e} (`cargo xtask setup` installs golang-1.19-go)")
        });
    assert!(
        out.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// File offset of the address `offset` bytes into function `name` of `binary`, through its
/// symbol table and program headers.
fn function_offset(binary: &Path, name: &str, offset: u64) -> u64 {
    let data = fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("{name} not in the symbol table"));
    let vaddr = symbol.address() + offset;
    file.segments()
        .find_map(|s| {
            let (file_start, size) = s.file_range();
            (s.address()..s.address() + size)
                .contains(&vaddr)
                .then(|| vaddr - s.address() + file_start)
        })
        .unwrap()
}

fn only_frame(resolved: &Resolved) -> &Frame {
    match resolved {
        Resolved::Frames(frames) => frames.last().unwrap(),
        Resolved::Unresolved(status) => panic!("unresolved: {status:?}"),
    }
}

/// Check that Go functions resolve with their names, file and line both in a normal build
/// (symbols and DWARF) and in a `-s -w` build (only `.gopclntab`), and that an address outside
/// any function of a `-s -w` build is unresolved, not guessed.
#[test]
fn go_binaries_with_and_without_symbols() {
    let work = tempfile::tempdir().unwrap();
    let full = go_build(work.path(), "full", "");
    let stripped = go_build(work.path(), "stripped", "-s -w");
    // `-s -w` removes .symtab and DWARF; the runtime's own table stays.
    let data = fs::read(&stripped).unwrap();
    let file = object::File::parse(&*data).unwrap();
    assert!(file.symbols().next().is_none());
    assert!(file.section_by_name(".debug_info").is_none());
    assert!(file.section_by_name(".gopclntab").is_some());

    let options = Options::default();
    for (name, marker) in [
        ("main.makeAlpha", "SITE_ALPHA"),
        ("main.makeBeta", "SITE_BETA"),
    ] {
        // Function entries sit at the same addresses in both builds (only non-loaded sections
        // differ), so the unstripped symbol table tells where to look in the stripped one.
        let entry = function_offset(&full, name, 0);
        for binary in [&full, &stripped] {
            let resolved = symbolize_file_offsets(binary, None, &[entry], &options);
            let frame = only_frame(&resolved[0]);
            assert_eq!(frame.function, name, "{}", binary.display());
            assert!(
                frame
                    .file
                    .as_deref()
                    .is_some_and(|f| f.ends_with("main.go")),
                "{frame:?} in {}",
                binary.display()
            );
            // The entry is on the function's declaration line, just above the marked line.
            assert_eq!(
                frame.line,
                Some(marker_line(marker) - 1),
                "{}",
                binary.display()
            );
        }
    }
    // Somewhere inside makeAlpha's body: its lines, never another function's.
    let body = function_offset(&full, "main.makeAlpha", 0x20);
    for binary in [&full, &stripped] {
        let resolved = symbolize_file_offsets(binary, None, &[body], &options);
        let frame = only_frame(&resolved[0]);
        assert_eq!(frame.function, "main.makeAlpha");
        let line = frame.line.unwrap();
        assert!((marker_line("SITE_ALPHA") - 1..=marker_line("SITE_ALPHA") + 1).contains(&line));
    }
    // The ELF header is in the first loaded segment but in no function.
    let resolved = symbolize_file_offsets(&stripped, None, &[0x10], &options);
    assert_eq!(resolved[0], Resolved::Unresolved(Status::NoSymbols));
    // Go binaries have no GNU build id: one recorded for them is a mismatch.
    let resolved = symbolize_file_offsets(&stripped, Some("abcd1234"), &[body], &options);
    assert_eq!(resolved[0], Resolved::Unresolved(Status::BuildIdMismatch));
}
