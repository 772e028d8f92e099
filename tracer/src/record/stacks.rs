//! Call stacks: the eBPF side stores each distinct stack once in the `STACKS` map under a hash
//! of its frames; rows refer to them by the trace's own small ids, written to `stacks.parquet`.

use std::path::Path;

use analysis::write::{WriteError, stacks_batch, write_table};
use aya::maps::{HashMap, MapData};
use rustc_hash::FxHashMap;
use tracer_common::stack::StackValue;

/// The stacks referenced by the rows written so far.
#[derive(Default)]
pub struct StackTable {
    /// `STACKS` key → trace stack id.
    ids: FxHashMap<u64, u32>,
    /// Trace stack id → (key, frames once read from the kernel map).
    stacks: Vec<(u64, Option<Vec<u64>>)>,
}

impl StackTable {
    /// The trace's id for the stack stored under `key`.
    pub fn intern(&mut self, key: u64) -> Option<u32> {
        let next = u32::try_from(self.stacks.len()).ok()?;
        let id = *self.ids.entry(key).or_insert(next);
        if id == next {
            self.stacks.push((key, None));
        }
        Some(id)
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Reads the frames of new stacks from the kernel map (entries are never removed, so a key
    /// always finds the stack that produced it) and rewrites `path`.
    pub fn write(
        &mut self,
        map: &HashMap<MapData, u64, StackValue>,
        path: &Path,
    ) -> Result<(), WriteError> {
        for (key, frames) in &mut self.stacks {
            if frames.is_none() {
                *frames = Some(
                    map.get(key, 0)
                        .map(|v| v.addresses().collect())
                        .unwrap_or_default(),
                );
            }
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

    /// Check that stacks are interned by key.
    #[test]
    fn interning() {
        let mut t = StackTable::default();
        assert_eq!(t.intern(0x10), Some(0));
        assert_eq!(t.intern(0x20), Some(1));
        assert_eq!(t.intern(0x10), Some(0));
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
