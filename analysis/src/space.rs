//! One process's mapped address space, rebuilt from mmap/munmap/mremap/mprotect rows, and the
//! running size of its heap-like part (anonymous, writable, not a thread stack).

use std::ops::Range;

use rangemap::RangeMap;

/// `PROT_WRITE`.
const PROT_WRITE: u32 = 0x2;
/// `MAP_ANONYMOUS` on x86-64.
pub const MAP_ANONYMOUS: u32 = 0x20;
/// `MAP_GROWSDOWN` and `MAP_STACK`: thread stacks, which are not heap even though they are
/// anonymous and writable.
const MAP_STACK_FLAGS: u32 = 0x100 | 0x20000;

/// What a mapped range is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub anonymous: bool,
    pub stack: bool,
    pub prot: u32,
}

impl Mapping {
    pub fn new(prot: u32, map_flags: u32, fd: i32) -> Mapping {
        Mapping {
            anonymous: fd < 0 || map_flags & MAP_ANONYMOUS != 0,
            stack: map_flags & MAP_STACK_FLAGS != 0,
            prot,
        }
    }

    /// Counts as heap footprint and is scanned for fragmentation.
    pub fn heap_like(&self) -> bool {
        self.anonymous && !self.stack && self.prot & PROT_WRITE != 0
    }
}

/// `[start, start + len)` clipped to the address space; `None` when empty.
pub fn span(start: u64, len: u64) -> Option<Range<u64>> {
    let end = start.saturating_add(len);
    (end > start).then_some(start..end)
}

#[derive(Clone, Debug, Default)]
pub struct AddressSpace {
    maps: RangeMap<u64, Mapping>,
    heap_bytes: u64,
}

impl AddressSpace {
    /// Bytes in heap-like mappings.
    pub fn heap_bytes(&self) -> u64 {
        self.heap_bytes
    }

    fn heap_overlap(&self, range: &Range<u64>) -> u64 {
        self.maps
            .overlapping(range)
            .filter(|(_, m)| m.heap_like())
            .map(|(r, _)| r.end.min(range.end) - r.start.max(range.start))
            .sum()
    }

    pub fn map(&mut self, range: Range<u64>, mapping: Mapping) {
        self.heap_bytes -= self.heap_overlap(&range);
        if mapping.heap_like() {
            self.heap_bytes += range.end - range.start;
        }
        self.maps.insert(range, mapping);
    }

    pub fn unmap(&mut self, range: Range<u64>) {
        self.heap_bytes -= self.heap_overlap(&range);
        self.maps.remove(range);
    }

    /// mprotect: changes the protection of the mapped parts of `range`.
    pub fn protect(&mut self, range: Range<u64>, prot: u32) {
        let pieces: Vec<(Range<u64>, Mapping)> = self
            .maps
            .overlapping(&range)
            .map(|(r, m)| {
                (
                    r.start.max(range.start)..r.end.min(range.end),
                    Mapping { prot, ..*m },
                )
            })
            .collect();
        for (piece, mapping) in pieces {
            self.map(piece, mapping);
        }
    }

    /// The mapping at `addr`, if any.
    pub fn get(&self, addr: u64) -> Option<Mapping> {
        self.maps.get(&addr).copied()
    }

    /// Appends the heap-like ranges, adjacent ones merged, in address order.
    pub fn heap_ranges(&self, out: &mut Vec<(u64, u64)>) {
        for (r, m) in self.maps.iter() {
            if !m.heap_like() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u32 = 0x3;

    /// Check that heap bytes follow map, partial unmap, mprotect and stack mappings.
    #[test]
    fn heap_bytes_follow_changes() {
        let mut s = AddressSpace::default();
        s.map(span(0x10000, 0x4000).unwrap(), Mapping::new(RW, 0x22, -1));
        assert_eq!(s.heap_bytes(), 0x4000);
        s.map(span(0x20000, 0x1000).unwrap(), Mapping::new(0x1, 0x2, 3));
        assert_eq!(s.heap_bytes(), 0x4000);
        s.unmap(span(0x11000, 0x1000).unwrap());
        assert_eq!(s.heap_bytes(), 0x3000);
        s.protect(span(0x10000, 0x1000).unwrap(), 0);
        assert_eq!(s.heap_bytes(), 0x2000);
        s.protect(span(0x10000, 0x2000).unwrap(), RW);
        assert_eq!(s.heap_bytes(), 0x3000);
        s.map(
            span(0x40000, 0x8000).unwrap(),
            Mapping::new(RW, 0x20022, -1),
        );
        assert_eq!(s.heap_bytes(), 0x3000);
        let mut ranges = Vec::new();
        s.heap_ranges(&mut ranges);
        assert_eq!(ranges, vec![(0x10000, 0x11000), (0x12000, 0x14000)]);
    }
}
