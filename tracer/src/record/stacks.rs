//! Call stacks: kernel stack-map ids plus the caller fixup, interned into the trace's own ids
//! and written to `stacks.parquet`.

use std::path::Path;

use analysis::write::{WriteError, stacks_batch, write_table};
use aya::maps::{MapData, StackTraceMap};
use rustc_hash::FxHashMap;

/// A kernel stack id and the caller fixup read with it.
type KernelStack = (u32, u64);

/// The stacks referenced by the rows written so far.
#[derive(Default)]
pub struct StackTable {
    /// (kernel stack id, caller fixup) → trace stack id.
    ids: FxHashMap<KernelStack, u32>,
    /// Trace stack id → its frames (resolved lazily from the kernel map).
    stacks: Vec<(KernelStack, Option<Vec<u64>>)>,
}

impl StackTable {
    /// The trace's id for a captured stack; `None` when none was captured.
    pub fn intern(&mut self, kernel_id: i32, caller: u64) -> Option<u32> {
        let kernel_id = u32::try_from(kernel_id).ok()?;
        let next = u32::try_from(self.stacks.len()).ok()?;
        let id = *self.ids.entry((kernel_id, caller)).or_insert(next);
        if id == next {
            self.stacks.push(((kernel_id, caller), None));
        }
        Some(id)
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Reads the frames of new stacks from the kernel map and rewrites `path`.
    pub fn write(&mut self, map: &StackTraceMap<MapData>, path: &Path) -> Result<(), WriteError> {
        for ((kernel_id, caller), frames) in &mut self.stacks {
            if frames.is_some() {
                continue;
            }
            let mut ips: Vec<u64> = map
                .get(kernel_id, 0)
                .map(|t| t.frames().iter().map(|f| f.ip).collect())
                .unwrap_or_default();
            // At a function entry before its frame exists, the walk skips the immediate caller;
            // the probe read it from [rsp] (see tracer_common::probe::STACK_CALLER_FIXUP).
            if *caller != 0 {
                let at = ips.len().min(1);
                ips.insert(at, *caller);
            }
            *frames = Some(ips);
        }
        let rows: Vec<(u32, Vec<u64>)> = self
            .stacks
            .iter()
            .enumerate()
            .map(|(id, (_, frames))| (id as u32, frames.clone().unwrap_or_default()))
            .collect();
        write_table(path, &stacks_batch(&rows)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that stacks are interned by (kernel id, caller) and that a missing stack has no id.
    #[test]
    fn interning() {
        let mut t = StackTable::default();
        assert_eq!(t.intern(-1, 0), None);
        assert_eq!(t.intern(5, 0x10), Some(0));
        assert_eq!(t.intern(5, 0x20), Some(1));
        assert_eq!(t.intern(5, 0x10), Some(0));
        assert_eq!(t.stacks.len(), 2);
    }
}
