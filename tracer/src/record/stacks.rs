//! Call stacks: the eBPF side stores each distinct stack once in the `STACKS` map under a hash
//! of its frames; rows refer to them by the trace's own small ids, written to `stacks.parquet`.
//!
//! A stack is read from the kernel map when it is first seen, in the drain loop, and its Python
//! frames (if any) are named right then from the process's memory: code objects die with the
//! process (or earlier), so waiting for the end of the recording would find nothing to read.

use std::{fs::File, os::unix::fs::FileExt as _, path::Path, sync::Arc};

use aya::maps::{HashMap, MapData};
use rustc_hash::FxHashMap;
use trace_format::write::{PythonFrame, StackRow, WriteError, stack_rows_batch, write_table};
use tracer_common::{python::PyFrame, stack::StackValue};

use crate::python::{
    code::{self, CodeInfo, Memory},
    frames::FrameLayout,
};

/// The stacks referenced by the rows written so far.
#[derive(Default)]
pub struct StackTable {
    /// `STACKS` key → trace stack id.
    ids: FxHashMap<u64, u32>,
    /// Trace stack id → its row (frames read when the stack was first seen).
    stacks: Vec<StackRow>,
}

impl StackTable {
    /// The trace's id for the stack stored under `key`, and whether it is new.
    pub fn intern(&mut self, key: u64) -> Option<(u32, bool)> {
        let next = u32::try_from(self.stacks.len()).ok()?;
        let id = *self.ids.entry(key).or_insert(next);
        let new = id == next;
        if new {
            self.stacks.push(StackRow {
                stack_id: id,
                ..StackRow::default()
            });
        }
        Some((id, new))
    }

    /// Reads the frames of new stack `id` (stored under `key`) from the kernel map (entries
    /// are never removed, and the eBPF side stores a stack before the row that uses it), and
    /// names its Python frames through `python`.
    pub fn load(
        &mut self,
        id: u32,
        key: u64,
        map: &HashMap<MapData, u64, StackValue>,
        python: &mut PythonNames,
        pid: u32,
        layout: Option<&FrameLayout>,
    ) {
        let Some(row) = self.stacks.get_mut(id as usize) else {
            return;
        };
        let Ok(value) = map.get(&key, 0) else {
            return;
        };
        row.frames = value.addresses().collect();
        let py = value.python_frames();
        if let (false, Some(layout)) = (py.is_empty(), layout) {
            row.python = Some(python.name(pid, layout, py));
        }
    }

    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Rewrites `path` with every stack seen so far.
    pub fn write(&self, path: &Path) -> Result<(), WriteError> {
        write_table(path, &stack_rows_batch(&self.stacks)?)
    }
}

/// `/proc/PID/mem` of a traced process.
struct ProcessMemory(File);

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.read_exact_at(buf, addr)
    }
}

/// One process's readable memory and the code objects named so far.
struct ProcessCode {
    mem: Option<ProcessMemory>,
    /// Code object address → what it was when last read.
    code: FxHashMap<u64, Cached>,
}

/// Names Python frames (qualified name, file, line) from the traced processes' memory, caching
/// each code object by address.
#[derive(Default)]
pub struct PythonNames {
    processes: FxHashMap<u32, ProcessCode>,
    /// Incremented at each drain of the ring: a cached code object is checked against the
    /// process's memory once per drain, not once per frame (a read per frame made naming
    /// the recorder's bottleneck).
    epoch: u64,
    /// Code objects read, and frames that could not be named (the code object was already
    /// freed, or its memory unreadable).
    pub code_objects_read: u64,
    pub frames_unnamed: u64,
}

/// A code object as last read, with its names ready to share between stacks.
struct Cached {
    info: CodeInfo,
    function: Arc<str>,
    file: Arc<str>,
    /// The drain during which it was last checked.
    checked: u64,
}

impl PythonNames {
    /// Starts a new drain of the ring (see `epoch`).
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
    }

    /// The named frames of one stack, innermost first. Frames still being set up (CPython's
    /// incomplete frames) are left out; a frame whose code object cannot be read is named
    /// `<unknown>` so the stack keeps its depth.
    pub fn name(&mut self, pid: u32, layout: &FrameLayout, frames: &[PyFrame]) -> Vec<PythonFrame> {
        let process = self.processes.entry(pid).or_insert_with(|| ProcessCode {
            mem: File::open(format!("/proc/{pid}/mem"))
                .ok()
                .map(ProcessMemory),
            code: FxHashMap::default(),
        });
        let mut out = Vec::with_capacity(frames.len());
        for frame in frames {
            // Frames just pushed by a call, before their first instruction (see the eBPF walk),
            // and the entry frames C code pushes (3.12+), which run no Python function.
            if frame.code == 0
                || (frame.instr as i32) < 0
                || layout.cstack_owner.map(u32::from) == Some(frame.owner)
            {
                continue;
            }
            let info = match process.mem.as_ref() {
                Some(mem) => lookup(
                    mem,
                    layout,
                    &mut process.code,
                    frame.code,
                    self.epoch,
                    &mut self.code_objects_read,
                ),
                None => process.code.get(&frame.code),
            };
            match info {
                Some(cached) if cached.info.is_incomplete(frame.instr) => {}
                Some(cached) => out.push(PythonFrame {
                    function: cached.function.clone(),
                    file: cached.file.clone(),
                    line: cached.info.line(frame.instr),
                }),
                None => {
                    self.frames_unnamed += 1;
                    out.push(PythonFrame {
                        function: Arc::from("<unknown>"),
                        file: Arc::from(format!("<code object {:#x}>", frame.code)),
                        line: None,
                    });
                }
            }
        }
        out
    }
}

/// The code object at `addr`: from the cache when the object there is still the one cached
/// (its name, file and table pointers and first line are unchanged: an address reused by a new
/// code object differs in them), read anew otherwise.
fn lookup<'a>(
    mem: &ProcessMemory,
    layout: &FrameLayout,
    cache: &'a mut FxHashMap<u64, Cached>,
    addr: u64,
    epoch: u64,
    reads: &mut u64,
) -> Option<&'a Cached> {
    let still_valid = match cache.get(&addr) {
        None => false,
        Some(cached) if cached.checked == epoch => true,
        Some(cached) => match code::identity(mem, layout, addr) {
            Ok(identity) => identity == cached.info.identity,
            // Unreadable now (the process exited): the cached name is the best there is.
            Err(_) => true,
        },
    };
    if still_valid {
        let cached = cache.get_mut(&addr)?;
        cached.checked = epoch;
        return Some(cached);
    }
    match code::read_code(mem, layout, addr) {
        Ok(info) => {
            *reads += 1;
            let cached = Cached {
                function: Arc::from(info.qualname.as_str()),
                file: Arc::from(info.filename.as_str()),
                info,
                checked: epoch,
            };
            cache.insert(addr, cached);
            cache.get(&addr)
        }
        Err(err) => {
            log::debug!(
                "Python code object {addr:#x}: {err}: {:?}",
                std::error::Error::source(&err)
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that stacks are interned by key.
    #[test]
    fn interning() {
        let mut t = StackTable::default();
        assert_eq!(t.intern(0x10), Some((0, true)));
        assert_eq!(t.intern(0x20), Some((1, true)));
        assert_eq!(t.intern(0x10), Some((0, false)));
        assert_eq!(t.stacks.len(), 2);
    }

    /// Check that the caller fixup lands between the probed instruction and the first return
    /// address.
    #[test]
    fn caller_fixup_order() {
        let mut v = StackValue::EMPTY;
        v.len = 3;
        v.frames[..3].copy_from_slice(&[1, 3, 4]);
        v.caller = 2;
        assert_eq!(v.addresses().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        v.caller = 0;
        assert_eq!(v.addresses().collect::<Vec<_>>(), vec![1, 3, 4]);
    }
}
