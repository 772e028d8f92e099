//! `frames.parquet`: writing it, reading it back, and naming the frames of a stack for the
//! reports and exports.

use std::{path::Path, sync::Arc};

use arrow::{
    array::{
        ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt16Array, UInt32Array,
        UInt64Array,
    },
    datatypes::{UInt16Type, UInt32Type, UInt64Type},
};
use rustc_hash::FxHashMap;

use super::{FrameRow, Status, SymbolizeError, tables};
use trace_format::{
    schema::{self, frame_col},
    write::{WriteError, write_table},
};

/// The `frames.parquet` batch for `rows`.
pub fn frames_batch(rows: &[FrameRow]) -> Result<RecordBatch, WriteError> {
    let strings = |f: fn(&FrameRow) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.pid))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.address),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.return_address)),
        )),
        Arc::new(UInt16Array::from_iter_values(rows.iter().map(|r| r.depth))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.inlined)),
        )),
        strings(|r| r.module.as_deref()),
        strings(|r| r.build_id.as_deref()),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.module_offset))),
        strings(|r| r.function.as_deref()),
        strings(|r| r.file.as_deref()),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.line))),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.column))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.status.as_str()),
        )),
    ];
    Ok(RecordBatch::try_new(schema::frames_schema(), columns)?)
}

/// Writes `rows` as `dir/frames.parquet` (atomically).
pub fn write_frames(dir: &Path, rows: &[FrameRow]) -> Result<(), SymbolizeError> {
    let path = dir.join(schema::FRAMES_FILE);
    let batch = frames_batch(rows).map_err(|source| SymbolizeError::Write {
        path: path.clone(),
        source,
    })?;
    write_table(&path, &batch).map_err(|source| SymbolizeError::Write { path, source })
}

/// Reads `dir/frames.parquet`.
pub fn read_frames(dir: &Path) -> Result<Vec<FrameRow>, SymbolizeError> {
    let path = dir.join(schema::FRAMES_FILE);
    let missing = |column| SymbolizeError::Column {
        path: path.clone(),
        column,
    };
    let mut rows = Vec::new();
    for batch in tables::read_batches(&path, &[])? {
        let column = |name: &'static str| batch.column_by_name(name).ok_or_else(|| missing(name));
        let pid = column(frame_col::PID)?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| missing(frame_col::PID))?;
        let address = column(frame_col::ADDRESS)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| missing(frame_col::ADDRESS))?;
        let ret = column(frame_col::RETURN_ADDRESS)?
            .as_boolean_opt()
            .ok_or_else(|| missing(frame_col::RETURN_ADDRESS))?;
        let depth = column(frame_col::DEPTH)?
            .as_primitive_opt::<UInt16Type>()
            .ok_or_else(|| missing(frame_col::DEPTH))?;
        let inlined = column(frame_col::INLINED)?
            .as_boolean_opt()
            .ok_or_else(|| missing(frame_col::INLINED))?;
        let string = |name: &'static str| {
            column(name)?
                .as_string_opt::<i32>()
                .cloned()
                .ok_or_else(|| missing(name))
        };
        let (module, build_id, function, file, status) = (
            string(frame_col::MODULE)?,
            string(frame_col::BUILD_ID)?,
            string(frame_col::FUNCTION)?,
            string(frame_col::FILE)?,
            string(frame_col::STATUS)?,
        );
        let offset = column(frame_col::MODULE_OFFSET)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| missing(frame_col::MODULE_OFFSET))?;
        let line = column(frame_col::LINE)?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| missing(frame_col::LINE))?;
        let col = column(frame_col::COLUMN)?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| missing(frame_col::COLUMN))?;
        let text = |a: &StringArray, i: usize| {
            (!arrow::array::Array::is_null(a, i)).then(|| a.value(i).to_owned())
        };
        let num =
            |a: &UInt64Array, i: usize| (!arrow::array::Array::is_null(a, i)).then(|| a.value(i));
        let num32 =
            |a: &UInt32Array, i: usize| (!arrow::array::Array::is_null(a, i)).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            rows.push(FrameRow {
                pid: pid.value(i),
                address: address.value(i),
                return_address: ret.value(i),
                depth: depth.value(i),
                inlined: inlined.value(i),
                module: text(&module, i),
                build_id: text(&build_id, i),
                module_offset: num(offset, i),
                function: text(&function, i),
                file: text(&file, i),
                line: num32(line, i),
                column: num32(col, i),
                // A status a newer writer added reads as "no symbols": unresolved, not wrong.
                status: Status::parse(status.value(i)).unwrap_or(Status::NoSymbols),
            });
        }
    }
    Ok(rows)
}

/// The last path component of `file`.
fn base_name(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

/// How one frame is shown: `function (file.c:12)`, or `module+0xoffset` when unresolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameName {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub inlined: bool,
    pub module: Option<String>,
    pub module_offset: Option<u64>,
    pub address: u64,
    pub status: Status,
}

impl FrameName {
    fn from_row(row: &FrameRow) -> FrameName {
        FrameName {
            function: row.function.clone(),
            file: row.file.clone(),
            line: row.line,
            inlined: row.inlined,
            module: row.module.clone(),
            module_offset: row.module_offset,
            address: row.address,
            status: row.status,
        }
    }

    /// A name for an address that has no row at all.
    pub fn unknown(address: u64) -> FrameName {
        FrameName {
            function: None,
            file: None,
            line: None,
            inlined: false,
            module: None,
            module_offset: None,
            address,
            status: Status::Unmapped,
        }
    }

    /// The function name, or `module+0xoffset` / `0xaddress` for an unresolved frame: stable
    /// across runs of the same binary, so flame graphs still merge.
    pub fn function_or_address(&self) -> String {
        match (&self.function, &self.module, self.module_offset) {
            (Some(f), _, _) => f.clone(),
            (None, Some(m), Some(off)) => format!("{}+{off:#x}", base_name(m)),
            _ => format!("{:#x}", self.address),
        }
    }

    /// `file.c:12` when known.
    pub fn location(&self) -> Option<String> {
        let file = base_name(self.file.as_deref()?);
        Some(match self.line {
            Some(line) => format!("{file}:{line}"),
            None => file.to_owned(),
        })
    }

    /// `function (file.c:12)`, with the status when unresolved, for tables and tooltips.
    pub fn label(&self) -> String {
        let mut out = self.function_or_address();
        if let Some(location) = self.location() {
            out.push_str(&format!(" ({location})"));
        }
        if self.inlined {
            out.push_str(" [inlined]");
        }
        if self.status != Status::Ok {
            out.push_str(&format!(" [{}]", self.status.as_str()));
        }
        out
    }
}

/// Functions that are the allocator itself or the language's plumbing in front of it.
pub fn is_allocator_frame(function: &str) -> bool {
    const EXACT: [&str; 16] = [
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "free",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "__libc_malloc",
        "__libc_calloc",
        "__libc_realloc",
        "__libc_memalign",
        "runtime.mallocgc",
        "runtime.newobject",
    ];
    const PREFIXES: [&str; 9] = [
        "operator new",
        "operator delete",
        "__GI___libc_",
        "__rust_alloc",
        "__rust_realloc",
        "__rust_dealloc",
        "__rdl_",
        "__rg_",
        "runtime.",
    ];
    EXACT.contains(&function) || PREFIXES.iter().any(|p| function.starts_with(p))
}

/// Code of a language's standard library, inlined into or called by the program: Rust's
/// `alloc`/`core`/`std` (sources under `/rustc/<hash>/library/`) and libstdc++ templates.
pub fn is_library_frame(function: &str, file: Option<&str>) -> bool {
    const PREFIXES: [&str; 9] = [
        "alloc::",
        "core::",
        "std::",
        "<alloc::",
        "<core::",
        "<std::",
        "<[",
        "<T as alloc::",
        "__gnu_cxx::",
    ];
    file.is_some_and(|f| f.starts_with("/rustc/") || f.contains("/include/c++/"))
        || PREFIXES.iter().any(|p| function.starts_with(p))
}

/// The stacks of a trace with their frames resolved through `frames.parquet`.
#[derive(Debug, Default)]
pub struct StackFrames {
    stacks: FxHashMap<u32, Vec<u64>>,
    /// (pid, address, return address) → frames innermost first.
    frames: FxHashMap<(u32, u64, bool), Vec<FrameName>>,
    /// (address, return address) of a stack's first frame → the pids that have it.
    pids: FxHashMap<u64, Vec<u32>>,
    /// Python frames by stack id, innermost first (stacks.parquet's `python_frames`).
    python: FxHashMap<u32, Vec<FrameName>>,
}

impl StackFrames {
    /// Loads `stacks.parquet` and `frames.parquet` of `dir`; `None` when the trace has not been
    /// symbolized (no frames.parquet).
    pub fn load(dir: &Path) -> Result<Option<StackFrames>, SymbolizeError> {
        if !dir.join(schema::FRAMES_FILE).exists() {
            return Ok(None);
        }
        let stacks = tables::read_stacks(dir)?;
        Ok(Some(
            StackFrames::new(stacks, &read_frames(dir)?)
                .with_python(tables::read_python_stacks(dir)?),
        ))
    }

    /// Adds the Python frames of the stacks that have them: such a stack is then its probed
    /// allocator frame followed by its Python frames (the interpreter's own C frames in
    /// between say little about the program, and without frame pointers they are unreliable).
    pub fn with_python(mut self, python: FxHashMap<u32, Vec<FrameName>>) -> StackFrames {
        self.python = python;
        self
    }

    pub fn new(stacks: FxHashMap<u32, Vec<u64>>, rows: &[FrameRow]) -> StackFrames {
        let mut sorted: Vec<&FrameRow> = rows.iter().collect();
        sorted.sort_by_key(|r| (r.pid, r.address, r.return_address, r.depth));
        let mut frames: FxHashMap<(u32, u64, bool), Vec<FrameName>> = FxHashMap::default();
        let mut pids: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        for row in sorted {
            frames
                .entry((row.pid, row.address, row.return_address))
                .or_default()
                .push(FrameName::from_row(row));
            if !row.return_address && row.depth == 0 {
                pids.entry(row.address).or_default().push(row.pid);
            }
        }
        StackFrames {
            stacks,
            frames,
            pids,
            python: FxHashMap::default(),
        }
    }

    /// The process whose address space gives `stack_id` its meaning, when the caller does not
    /// know it: the first process that has the stack's first frame.
    fn pid_of(&self, stack_id: u32) -> Option<u32> {
        let first = *self.stacks.get(&stack_id)?.first()?;
        self.pids.get(&first)?.first().copied()
    }

    /// The addresses of `stack_id`, innermost first.
    pub fn addresses(&self, stack_id: u32) -> Option<&[u64]> {
        self.stacks.get(&stack_id).map(Vec::as_slice)
    }

    /// The frames at one address of `pid`, innermost first (one unresolved frame when the
    /// address has no row).
    pub fn address(&self, pid: u32, address: u64, return_address: bool) -> Vec<FrameName> {
        match self.frames.get(&(pid, address, return_address)) {
            Some(frames) => frames.clone(),
            None => vec![FrameName::unknown(address)],
        }
    }

    /// Every frame of `stack_id` in `pid` (or its usual process), innermost first, inlined
    /// frames expanded.
    pub fn stack(&self, pid: Option<u32>, stack_id: u32) -> Option<Vec<FrameName>> {
        let addresses = self.stacks.get(&stack_id)?;
        let pid = pid.or_else(|| self.pid_of(stack_id))?;
        if let Some(python) = self.python.get(&stack_id) {
            let mut out: Vec<FrameName> = match addresses.first() {
                Some(&address) => self
                    .frames
                    .get(&(pid, address, false))
                    .cloned()
                    .unwrap_or_else(|| vec![FrameName::unknown(address)]),
                None => Vec::new(),
            };
            out.extend(python.iter().cloned());
            return Some(out);
        }
        let mut out = Vec::with_capacity(addresses.len());
        for (i, &address) in addresses.iter().enumerate() {
            match self.frames.get(&(pid, address, i > 0)) {
                Some(frames) => out.extend(frames.iter().cloned()),
                None => out.push(FrameName::unknown(address)),
            }
        }
        Some(out)
    }

    /// Index of the call site in `frames`: the first frame after the probed allocator
    /// instruction (frame 0) that is neither allocator plumbing nor standard-library code, so
    /// that `Vec::with_capacity` inlined into `make_alpha` is reported at `make_alpha`'s line.
    /// Falls back to the first non-allocator frame, then to the frame after frame 0. A display
    /// choice only: every frame stays in the data.
    pub fn site_index(frames: &[FrameName]) -> Option<usize> {
        // Frame 0 and the functions inlined into it are the allocator's own code.
        let after = frames.iter().position(|f| !f.inlined)? + 1;
        let rest = || frames.iter().enumerate().skip(after);
        let allocator = |f: &FrameName| f.function.as_deref().is_some_and(is_allocator_frame);
        let library = |f: &FrameName| {
            f.function
                .as_deref()
                .is_some_and(|name| is_library_frame(name, f.file.as_deref()))
        };
        rest()
            .find(|(_, f)| !allocator(f) && !library(f))
            .or_else(|| rest().find(|(_, f)| !allocator(f)))
            .map(|(i, _)| i)
            .or_else(|| (after < frames.len()).then_some(after))
    }
}

/// Resolves a stack id to frames. Implemented by [`StackFrames`] from `stacks.parquet` and
/// `frames.parquet`; the reports name their stacks through it.
pub trait StackSymbols {
    /// Every frame, innermost first, as `function (file:line)`.
    fn frames(&self, stack_id: u32) -> Option<Vec<String>>;
    /// The call site among those frames (the first outside the allocator): its index in
    /// [`Self::frames`] and its label.
    fn site(&self, _stack_id: u32) -> Option<(usize, String)> {
        None
    }
    /// Frame names for flame graphs, innermost first: function names only, so that frames of
    /// one function merge whatever the line.
    fn flame_frames(&self, stack_id: u32) -> Option<Vec<String>> {
        self.frames(stack_id)
    }
}

impl StackSymbols for StackFrames {
    fn frames(&self, stack_id: u32) -> Option<Vec<String>> {
        let frames = self.stack(None, stack_id)?;
        Some(frames.iter().map(|f| f.label()).collect())
    }

    fn site(&self, stack_id: u32) -> Option<(usize, String)> {
        let frames = self.stack(None, stack_id)?;
        let index = StackFrames::site_index(&frames)?;
        frames.get(index).map(|f| (index, f.label()))
    }

    fn flame_frames(&self, stack_id: u32) -> Option<Vec<String>> {
        let frames = self.stack(None, stack_id)?;
        Some(frames.iter().map(|f| f.function_or_address()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: u32, address: u64, ret: bool, depth: u16, function: &str) -> FrameRow {
        FrameRow {
            pid,
            address,
            return_address: ret,
            depth,
            inlined: false,
            module: Some("/usr/bin/prog".into()),
            build_id: None,
            module_offset: Some(address - 0x1000),
            function: Some(function.to_owned()),
            file: Some("/src/prog.c".into()),
            line: Some(depth as u32 + 10),
            column: None,
            status: Status::Ok,
        }
    }

    /// Check that frames.parquet round-trips every column, nulls included.
    #[test]
    fn frames_table_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = vec![
            row(7, 0x1100, false, 0, "malloc"),
            row(7, 0x1200, true, 0, "f"),
        ];
        rows.push(FrameRow {
            function: None,
            file: None,
            line: None,
            module: None,
            module_offset: None,
            status: Status::Unmapped,
            ..row(7, 0x9999, true, 0, "")
        });
        rows[1].inlined = true;
        rows[1].column = Some(4);
        write_frames(dir.path(), &rows).unwrap();
        assert_eq!(read_frames(dir.path()).unwrap(), rows);
    }

    /// Check that a stack's frames are expanded with inlined functions in order, that the call
    /// site skips the allocator and Rust's allocation plumbing, and that unresolved frames are
    /// named by module and offset.
    #[test]
    fn stack_names_and_call_site() {
        let mut inlined = row(7, 0x1300, true, 0, "alloc::raw_vec::RawVec<T>::allocate_in");
        inlined.inlined = true;
        inlined.file = Some("/rustc/0123abcd/library/alloc/src/raw_vec/mod.rs".into());
        let rows = vec![
            row(7, 0x1100, false, 0, "malloc"),
            row(7, 0x1200, true, 0, "__rust_alloc"),
            inlined,
            row(7, 0x1300, true, 1, "app::make_alpha"),
            row(7, 0x1400, true, 0, "main"),
            FrameRow {
                function: None,
                status: Status::Stripped,
                ..row(7, 0x1500, true, 0, "")
            },
        ];
        let stacks = [(3u32, vec![0x1100, 0x1200, 0x1300, 0x1400, 0x1500])]
            .into_iter()
            .collect();
        let table = StackFrames::new(stacks, &rows);
        let frames = table.stack(None, 3).unwrap();
        let names: Vec<String> = frames.iter().map(|f| f.function_or_address()).collect();
        assert_eq!(
            names,
            [
                "malloc",
                "__rust_alloc",
                "alloc::raw_vec::RawVec<T>::allocate_in",
                "app::make_alpha",
                "main",
                "prog+0x500"
            ]
        );
        assert_eq!(StackFrames::site_index(&frames), Some(3));
        assert_eq!(
            table.site(3),
            Some((3, "app::make_alpha (prog.c:11)".to_owned()))
        );
        assert_eq!(frames[5].label(), "prog+0x500 (prog.c:10) [stripped]");
        assert_eq!(table.stack(Some(8), 3).unwrap()[0].status, Status::Unmapped);
        assert!(table.stack(None, 4).is_none());
    }
}
