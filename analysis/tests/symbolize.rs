//! Symbolization and export of a hand-made trace whose stacks point into a real binary that the
//! test compiles: the whole pipeline without root or a tracer (the tracer's suite does the same
//! on recorded traces).

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod common;

use std::{fs, path::Path, process::Command};

use analysis::{
    export::{NamedProfile, folded, profile::Measure},
    symbolize::{self, StackFrames, Status},
};
use object::{Object, ObjectSegment, ObjectSymbol};
use trace_format::{
    schema,
    write::{ModuleRow, Row, modules_batch, stacks_batch, write_table},
};

const SOURCE: &str = r#"#include <stdlib.h>
void *volatile sink;
__attribute__((noinline)) void leaf(void) {
    sink = malloc(64);
}
__attribute__((noinline)) void middle(void) {
    leaf(); /* CALL_LEAF */
    sink = 0;
}
int main(void) {
    middle();
    return 0;
}
"#;

/// Where the test maps the binary.
const BASE: u64 = 0x5555_0000_0000;

fn line_of(marker: &str) -> u32 {
    SOURCE.lines().position(|l| l.contains(marker)).unwrap() as u32 + 1
}

/// Link-time address of symbol `name`.
fn symbol(binary: &Path, name: &str) -> u64 {
    let data = fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap()
        .address()
}

/// File offset of link-time address `vaddr`, through the program headers.
fn file_offset(binary: &Path, vaddr: u64) -> u64 {
    let data = fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.segments()
        .find_map(|s| {
            let (start, size) = s.file_range();
            (s.address()..s.address() + size)
                .contains(&vaddr)
                .then(|| vaddr - s.address() + start)
        })
        .unwrap()
}

fn build_id(binary: &Path) -> String {
    let data = fs::read(binary).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let id = file.build_id().unwrap().unwrap();
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Link-time address of the instruction after `middle`'s call to `leaf`: a real return
/// address.
fn return_address_in_middle(binary: &Path) -> u64 {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(binary)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let body = text.split("<middle>:").nth(1).unwrap();
    let mut lines = body
        .lines()
        .skip_while(|l| !(l.contains("call") && l.contains("<leaf>")));
    lines.next().unwrap();
    let next = lines.next().unwrap();
    u64::from_str_radix(next.trim().split(':').next().unwrap(), 16).unwrap()
}

/// Check the whole pipeline on a hand-made trace: return addresses resolve to the line of the
/// call, the first frame to its own line, an address outside every mapping is `unmapped`, the
/// same binary recorded with another build id is `build_id_mismatch` for that process only,
/// and the folded export names the frames outermost first.
#[test]
fn symbolize_and_export_a_hand_made_trace() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("prog.c");
    fs::write(&src, SOURCE).unwrap();
    let bin = work.path().join("prog");
    let status = Command::new("gcc")
        .args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());

    let dir = work.path().join("trace");
    // Mapped whole at BASE with file offset 0: file offset o is at BASE + o.
    let in_leaf = BASE + file_offset(&bin, symbol(&bin, "leaf") + 4);
    let ret_in_middle = BASE + file_offset(&bin, return_address_in_middle(&bin));
    let stacks = vec![(0u32, vec![in_leaf, ret_in_middle, 0x10])];
    let mut alloc = common::alloc(10, 0x1000, 64);
    alloc.stack_id = Some(0);
    let other = Row {
        pid: 101,
        tid: 101,
        ts_ns: 11,
        addr: 0x2000,
        ..alloc
    };
    common::write_trace(&dir, &[alloc, other]);
    write_table(
        &dir.join(schema::STACKS_FILE),
        &stacks_batch(&stacks).unwrap(),
    )
    .unwrap();
    let size = fs::metadata(&bin).unwrap().len();
    let module = |pid: u32, build_id: String| ModuleRow {
        pid,
        path: bin.display().to_string(),
        build_id: Some(build_id),
        start: BASE,
        end: BASE + size,
        file_offset: 0,
        perms: "r-xp".into(),
        ts_ns: 0,
    };
    let modules = [
        module(common::PID, build_id(&bin)),
        module(101, "00112233445566778899aabbccddeeff00112233".into()),
    ];
    write_table(
        &dir.join(schema::MODULES_FILE),
        &modules_batch(&modules).unwrap(),
    )
    .unwrap();

    let summary = symbolize::symbolize_trace(&dir).unwrap();
    assert_eq!(summary.stacks, 2, "{summary}");
    assert_eq!(summary.by_status.get(&Status::Ok), Some(&2), "{summary}");
    assert_eq!(
        summary.by_status.get(&Status::Unmapped),
        Some(&2),
        "{summary}"
    );
    assert_eq!(
        summary.by_status.get(&Status::BuildIdMismatch),
        Some(&2),
        "{summary}"
    );
    assert!(
        summary.to_string().contains("build id mismatch"),
        "{summary}"
    );

    let rows = symbolize::read_frames(&dir).unwrap();
    let ours = |address: u64| {
        rows.iter()
            .find(|r| r.pid == common::PID && r.address == address)
            .unwrap()
    };
    let leaf = ours(in_leaf);
    assert_eq!(
        (leaf.function.as_deref(), leaf.return_address, leaf.status),
        (Some("leaf"), false, Status::Ok)
    );
    // Four bytes into leaf: its prologue or first statement.
    let leaf_line = leaf.line.unwrap();
    assert!((line_of("void leaf")..=line_of("sink = malloc(64)")).contains(&leaf_line));
    let middle = ours(ret_in_middle);
    assert_eq!(middle.function.as_deref(), Some("middle"));
    assert!(middle.return_address);
    assert_eq!(middle.line, Some(line_of("CALL_LEAF")));
    assert!(middle.file.as_deref().unwrap().ends_with("prog.c"));
    assert_eq!(ours(0x10).status, Status::Unmapped);
    assert!(
        rows.iter()
            .filter(|r| r.pid == 101 && r.address != 0x10)
            .all(|r| r.status == Status::BuildIdMismatch && r.function.is_none())
    );

    let frames = StackFrames::load(&dir).unwrap().unwrap();
    let names: Vec<String> = frames
        .stack(Some(common::PID), 0)
        .unwrap()
        .iter()
        .map(|f| f.function_or_address())
        .collect();
    assert_eq!(names, ["leaf", "middle", "0x10"]);
    let (named, symbolized_now) = NamedProfile::load(&dir, &symbolize::Options::default()).unwrap();
    assert!(!symbolized_now);
    let lines = folded::lines(&named, Measure::AllocSpace, false);
    assert_eq!(lines.get("0x10;middle;leaf"), Some(&64), "{lines:?}");
    assert!(
        lines.keys().any(|k| k.starts_with("0x10;prog+0x")),
        "{lines:?}"
    );
}

const CXX_SOURCE: &str = r#"#include <cstdlib>
#include <vector>
namespace shapes {
struct Widget {
    __attribute__((noinline)) static void *make(unsigned long n) { return std::malloc(n); }
};
}
int main(int argc, char **) {
    std::vector<int> v(argc);
    return shapes::Widget::make(v.size()) != nullptr;
}
"#;

/// Check that C++ functions come out demangled, qualified by their namespace and class, from
/// the symbol table alone and from DWARF.
#[test]
fn cxx_names_are_demangled() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("widget.cpp");
    fs::write(&src, CXX_SOURCE).unwrap();
    for (name, flags) in [("symtab", &["-O1"][..]), ("dwarf", &["-O1", "-g"][..])] {
        let bin = work.path().join(name);
        let status = Command::new("g++")
            .args(flags)
            .arg("-o")
            .arg(&bin)
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success());
        let entry = file_offset(&bin, symbol(&bin, "_ZN6shapes6Widget4makeEm"));
        let resolved = symbolize::symbolize_file_offsets(
            &bin,
            Some(&build_id(&bin)),
            &[entry],
            &symbolize::Options::default(),
        );
        let symbolize::elf::Resolved::Frames(frames) = &resolved[0] else {
            panic!("{name}: {resolved:?}");
        };
        let function = &frames.last().unwrap().function;
        assert_eq!(function, "shapes::Widget::make(unsigned long)", "{name}");
    }
}
