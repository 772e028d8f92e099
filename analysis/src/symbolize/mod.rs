//! Offline symbolization of a trace's call stacks into `frames.parquet`.
//!
//! Every address of `stacks.parquet` is mapped, in the address space of the process that
//! captured it, to a module and file offset through `modules.parquet`; the file on disk is
//! checked against the recorded build id (a different file is reported and its frames left
//! unresolved, never guessed); then the function, source file and line are read from the file
//! alone, so this works long after the process exited:
//!
//! * ELF `.symtab`/`.dynsym`, DWARF lines and inlined functions, Rust and C++ demangling, and
//!   `.gnu_debuglink` are read with [blazesym]. It was chosen over composing `gimli` +
//!   `addr2line` + `object` + two demanglers by hand because it does all of that offline from a
//!   file path and a link-time address, keeps a parsed-file cache across calls, and is
//!   maintained with libbpf for exactly this use (symbolizing BPF-captured stacks); the price
//!   is one larger dependency.
//! * Separate debug files are found by build id (`/usr/lib/debug/.build-id/ab/cdef….debug`) by
//!   us, so they are used even when the installed file lacks a `.gnu_debuglink`.
//! * Go binaries without DWARF (`-ldflags='-s -w'`) are read through `.gopclntab`
//!   ([`gopclntab`]), which Go always keeps.
//!
//! Return addresses (every frame of a stack but the first, which is the probed instruction)
//! are looked up at `address − 1`, inside the call instruction, so the line is the call's.
//!
//! ```no_run
//! let summary = analysis::symbolize::symbolize_trace("trace".as_ref())?;
//! println!("{summary}");
//! # Ok::<(), analysis::symbolize::SymbolizeError>(())
//! ```
//!
//! [blazesym]: https://docs.rs/blazesym

pub mod elf;
pub mod frames;
pub mod gopclntab;
pub mod tables;

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use blazesym::symbolize::Symbolizer;
use parquet::errors::ParquetError;
use serde::Serialize;

pub use frames::{FrameName, StackFrames, StackSymbols, read_frames, write_frames};
pub use tables::{Module, ModuleMap};

use trace_format::{
    schema::{self, frame_status},
    write::WriteError,
};

/// Symbolizing a trace failed (as a whole: per-address problems are [`Status`]es).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolizeError {
    #[error("{} has no stacks.parquet (recorded with --no-stacks?): nothing to symbolize", dir.display())]
    NoStacks { dir: PathBuf },
    #[error("{} has no modules.parquet: the module map needed to symbolize is missing", dir.display())]
    NoModules { dir: PathBuf },
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a readable Parquet table", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("{} lacks column `{column}` or it has an unexpected type", path.display())]
    Column { path: PathBuf, column: &'static str },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: WriteError,
    },
}

/// What became of one address (the `status` column of `frames.parquet`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    NoSymbols,
    BuildIdMismatch,
    MissingFile,
    Stripped,
    Unmapped,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::NoSymbols,
        Status::BuildIdMismatch,
        Status::MissingFile,
        Status::Stripped,
        Status::Unmapped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => frame_status::OK,
            Status::NoSymbols => frame_status::NO_SYMBOLS,
            Status::BuildIdMismatch => frame_status::BUILD_ID_MISMATCH,
            Status::MissingFile => frame_status::MISSING_FILE,
            Status::Stripped => frame_status::STRIPPED,
            Status::Unmapped => frame_status::UNMAPPED,
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// One row of `frames.parquet` (see [`schema::frames_schema`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRow {
    pub pid: u32,
    pub address: u64,
    pub return_address: bool,
    pub depth: u16,
    pub inlined: bool,
    pub module: Option<String>,
    pub build_id: Option<String>,
    pub module_offset: Option<u64>,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub status: Status,
}

/// Where to look for symbols.
#[derive(Clone, Debug)]
pub struct Options {
    /// Roots searched for `.build-id/ab/cdef….debug` and debug links.
    pub debug_dirs: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            debug_dirs: vec![PathBuf::from("/usr/lib/debug")],
        }
    }
}

/// What happened to one module file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleSummary {
    pub path: String,
    /// Build id recorded when it was mapped, and the one of the file on disk.
    pub recorded_build_id: Option<String>,
    pub found_build_id: Option<String>,
    /// The separate debug file used, if any.
    pub debug_file: Option<String>,
    /// Distinct addresses in this module, and how many got a function.
    pub addresses: usize,
    pub resolved: usize,
    /// The status of its unresolved addresses (or `ok` when all resolved).
    pub status: Status,
}

/// The outcome of symbolizing a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolizeSummary {
    /// (pid, stack id) pairs referenced by events whose stack is in stacks.parquet.
    pub stacks: usize,
    /// Distinct (pid, address, return address) keys.
    pub addresses: usize,
    /// Rows of frames.parquet (inlined frames add rows).
    pub rows: usize,
    /// Addresses per status.
    pub by_status: BTreeMap<Status, usize>,
    pub modules: Vec<ModuleSummary>,
    #[serde(skip)]
    pub elapsed: Duration,
    /// Where frames.parquet was written (None when only computed).
    pub output: Option<PathBuf>,
}

impl SymbolizeSummary {
    /// Addresses that got a function.
    pub fn resolved(&self) -> usize {
        self.by_status.get(&Status::Ok).copied().unwrap_or(0)
    }
}

impl fmt::Display for SymbolizeSummary {
    /// A headline and one line per module that could not be symbolized fully and why.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        write!(
            f,
            "symbolized {} addresses of {} stacks in {:.2} s: {}",
            self.addresses,
            self.stacks,
            self.elapsed.as_secs_f64(),
            if statuses.is_empty() {
                "nothing to do".to_owned()
            } else {
                statuses.join(", ")
            }
        )?;
        if let Some(output) = &self.output {
            write!(f, " → {}", output.display())?;
        }
        for m in self.modules.iter().filter(|m| m.status != Status::Ok) {
            let unresolved = m.addresses - m.resolved;
            let why = match m.status {
                Status::BuildIdMismatch => format!(
                    "build id mismatch (recorded {}, on disk {}): the file changed since the trace; frames left unsymbolized",
                    m.recorded_build_id.as_deref().unwrap_or("none"),
                    m.found_build_id.as_deref().unwrap_or("none")
                ),
                Status::MissingFile => "file missing or unreadable".to_owned(),
                Status::Stripped => {
                    "stripped (no symbol table, no debug information): shown as module+offset"
                        .to_owned()
                }
                Status::NoSymbols => "no symbol covers these addresses".to_owned(),
                Status::Unmapped | Status::Ok => continue,
            };
            write!(
                f,
                "\n  {}: {unresolved} of {} addresses unresolved: {why}",
                m.path, m.addresses
            )?;
        }
        if let Some(n) = self.by_status.get(&Status::Unmapped) {
            write!(
                f,
                "\n  {n} addresses outside every file mapping (JIT code, vDSO or a damaged stack)"
            )?;
        }
        Ok(())
    }
}

/// Symbolizes file offsets of one module file directly (no trace): what [`symbolize`] does for
/// each module. `build_id` is the id the file must have (`None`: it must have none). Offsets
/// are looked up as given (subtract 1 from return addresses first).
pub fn symbolize_file_offsets(
    path: &Path,
    build_id: Option<&str>,
    offsets: &[u64],
    options: &Options,
) -> Vec<elf::Resolved> {
    let file = elf::ModuleFile::open(path, build_id, &options.debug_dirs);
    file.resolve(&symbolizer(options), offsets)
}

fn symbolizer(options: &Options) -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .set_debug_dirs(Some(&options.debug_dirs))
        .build()
}

/// A module file as recorded: its path and build id.
type FileKey = (String, Option<String>);

/// A distinct address to symbolize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    pid: u32,
    address: u64,
    return_address: bool,
}

/// Symbolizes `dir` with the default [`Options`] and writes `dir/frames.parquet`. This is what
/// `alloctrace record` calls at the end and `alloctrace symbolize` runs.
pub fn symbolize_trace(dir: &Path) -> Result<SymbolizeSummary, SymbolizeError> {
    symbolize_trace_with(dir, &Options::default())
}

/// [`symbolize_trace`] with explicit options.
pub fn symbolize_trace_with(
    dir: &Path,
    options: &Options,
) -> Result<SymbolizeSummary, SymbolizeError> {
    let (rows, mut summary) = symbolize(dir, options)?;
    write_frames(dir, &rows)?;
    summary.output = Some(dir.join(schema::FRAMES_FILE));
    Ok(summary)
}

/// Symbolizes every stack address of `dir` without writing anything: the rows of
/// `frames.parquet`, sorted by (pid, address, return address, depth), and a summary.
pub fn symbolize(
    dir: &Path,
    options: &Options,
) -> Result<(Vec<FrameRow>, SymbolizeSummary), SymbolizeError> {
    let started = Instant::now();
    let stacks = tables::read_stacks(dir)?;
    let map = ModuleMap::new(tables::read_modules(dir)?);
    let users = tables::stack_users(dir)?;
    let mut keys: Vec<Key> = Vec::new();
    let mut used_stacks = 0;
    for &(pid, stack_id) in &users {
        let Some(frames) = stacks.get(&stack_id) else {
            continue;
        };
        used_stacks += 1;
        keys.extend(frames.iter().enumerate().map(|(i, &address)| Key {
            pid,
            address,
            return_address: i > 0,
        }));
    }
    keys.sort_unstable();
    keys.dedup();

    // Group the addresses by module file (path and recorded build id): each file is opened and
    // checked once, and blazesym is asked for all its addresses in one call.
    let mut by_file: BTreeMap<FileKey, Vec<(usize, u64)>> = BTreeMap::new();
    let mut placed: Vec<Option<(usize, u64)>> = vec![None; keys.len()];
    for (i, key) in keys.iter().enumerate() {
        // Inside the call instruction for return addresses (see the module docs).
        let lookup = key.address.saturating_sub(u64::from(key.return_address));
        if let Some((module, offset)) = map.lookup(key.pid, lookup) {
            placed[i] = Some((module, offset));
            let m = map.module(module);
            by_file
                .entry((m.path.clone(), m.build_id.clone()))
                .or_default()
                .push((i, offset));
        }
    }
    let symbolizer = symbolizer(options);
    let mut resolved: Vec<Option<elf::Resolved>> = vec![None; keys.len()];
    let mut modules = Vec::new();
    for ((path, build_id), entries) in &by_file {
        let file = elf::ModuleFile::open(Path::new(path), build_id.as_deref(), &options.debug_dirs);
        let offsets: Vec<u64> = entries.iter().map(|(_, offset)| *offset).collect();
        let results = file.resolve(&symbolizer, &offsets);
        let mut ok = 0;
        let mut failure = Status::Ok;
        for ((i, _), result) in entries.iter().zip(results) {
            match &result {
                elf::Resolved::Frames(_) => ok += 1,
                elf::Resolved::Unresolved(status) => failure = *status,
            }
            resolved[*i] = Some(result);
        }
        modules.push(ModuleSummary {
            path: path.clone(),
            recorded_build_id: build_id.clone(),
            found_build_id: file.found_build_id.clone(),
            debug_file: file.debug_file.as_ref().map(|p| p.display().to_string()),
            addresses: entries.len(),
            resolved: ok,
            status: failure,
        });
    }

    let mut rows = Vec::with_capacity(keys.len());
    let mut by_status: BTreeMap<Status, usize> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let base = FrameRow {
            pid: key.pid,
            address: key.address,
            return_address: key.return_address,
            depth: 0,
            inlined: false,
            module: None,
            build_id: None,
            module_offset: None,
            function: None,
            file: None,
            line: None,
            column: None,
            status: Status::Unmapped,
        };
        let base = match placed[i] {
            Some((module, offset)) => {
                let m = map.module(module);
                FrameRow {
                    module: Some(m.path.clone()),
                    build_id: m.build_id.clone(),
                    module_offset: Some(offset),
                    ..base
                }
            }
            None => base,
        };
        match resolved[i].take() {
            Some(elf::Resolved::Frames(frames)) => {
                *by_status.entry(Status::Ok).or_default() += 1;
                let last = frames.len().saturating_sub(1);
                for (depth, frame) in frames.into_iter().enumerate() {
                    rows.push(FrameRow {
                        depth: u16::try_from(depth).unwrap_or(u16::MAX),
                        inlined: depth < last,
                        function: Some(frame.function),
                        file: frame.file,
                        line: frame.line,
                        column: frame.column,
                        status: Status::Ok,
                        ..base.clone()
                    });
                }
            }
            Some(elf::Resolved::Unresolved(status)) => {
                *by_status.entry(status).or_default() += 1;
                rows.push(FrameRow { status, ..base });
            }
            None => {
                *by_status.entry(Status::Unmapped).or_default() += 1;
                rows.push(base);
            }
        }
    }
    let summary = SymbolizeSummary {
        stacks: used_stacks,
        addresses: keys.len(),
        rows: rows.len(),
        by_status,
        modules,
        elapsed: started.elapsed(),
        output: None,
    };
    Ok((rows, summary))
}
