//! The table of live blocks by address: open addressing with linear probing and tombstones,
//! keys and values in separate arrays, and a [`AddrMap::prefetch`] that starts the cache misses
//! of a lookup before it is made.
//!
//! Written by hand because the replay's cost is the cache miss, not the hashing: every row looks
//! up one address, at random, among up to millions of live blocks. A `HashMap` (std's or
//! hashbrown's) hides where a key's slot is until the lookup itself, so the miss cannot be
//! started a few rows ahead; here the slot is a multiply and a shift. Keys alone are probed
//! (eight per cache line), so a lookup touches one line of keys and one value.

/// Slot markers. Addresses 0 and 1 are never live blocks, but they are still valid keys (kept
/// aside in `special`) so the map has no hidden precondition.
const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
const MIN_SLOTS: usize = 16;

/// Most used slots (live and tombstones) per slot, as a fraction: linear probing stays short
/// up to about 3/4 (4/5 made the report 13% slower).
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

#[derive(Clone, Debug)]
pub struct AddrMap<V> {
    keys: Vec<u64>,
    values: Vec<V>,
    /// Slots holding a key (the special keys not included).
    len: usize,
    /// Slots whose key was removed from the middle of a probe run.
    tombstones: usize,
    /// `64 - log2(slots)`: the top bits of the multiplied key are the home slot.
    shift: u32,
    /// Values of the keys `EMPTY` and `TOMBSTONE`.
    special: [Option<V>; 2],
}

impl<V: Copy + Default> Default for AddrMap<V> {
    fn default() -> Self {
        AddrMap::with_slots(MIN_SLOTS)
    }
}

impl<V: Copy + Default> AddrMap<V> {
    fn with_slots(slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two());
        AddrMap {
            keys: vec![EMPTY; slots],
            values: vec![V::default(); slots],
            len: 0,
            tombstones: 0,
            shift: 64 - slots.trailing_zeros(),
            special: [None, None],
        }
    }

    /// Fibonacci hashing: allocator addresses differ in their low bits (multiples of 16), and
    /// the multiply carries those into the top bits that pick the slot.
    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.keys.len() - 1
    }

    /// `Ok(slot)` holding `key` (not special), or `Err(slot)` where it would go: the first
    /// tombstone of its probe run, else the empty slot that ends the run.
    #[inline(always)]
    fn find(&self, key: u64) -> Result<usize, usize> {
        let mask = self.mask();
        let mut slot = self.home(key);
        let mut reusable = None;
        loop {
            match self.keys[slot] {
                k if k == key => return Ok(slot),
                EMPTY => return Err(reusable.unwrap_or(slot)),
                TOMBSTONE => {
                    reusable.get_or_insert(slot);
                }
                _ => {}
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Hints the CPU to load the lines a lookup of `key` will read first.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        let slot = self.home(key);
        prefetch((&raw const self.keys[slot]).cast());
        // A value can straddle two cache lines: load both.
        let value: *const u8 = (&raw const self.values[slot]).cast();
        prefetch(value);
        prefetch(value.wrapping_add(size_of::<V>().saturating_sub(1)));
    }

    /// Sets `key` to `value`, returning the value it replaces.
    #[inline(always)]
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        if key <= TOMBSTONE {
            return self.special[key as usize].replace(value);
        }
        let mut slot = match self.find(key) {
            Ok(slot) => return Some(std::mem::replace(&mut self.values[slot], value)),
            Err(slot) => slot,
        };
        if self.keys[slot] == TOMBSTONE {
            self.tombstones -= 1;
        } else if (self.len + self.tombstones + 1) * LOAD_DEN > self.keys.len() * LOAD_NUM {
            self.rebuild();
            slot = self.find(key).unwrap_or_else(|slot| slot);
        }
        self.keys[slot] = key;
        self.values[slot] = value;
        self.len += 1;
        None
    }

    /// Takes `key` out, returning its value.
    ///
    /// The slot becomes a tombstone, so no value moves (a backward-shift deletion moved the
    /// values after it, each a cache miss); a slot at the end of its run, and the tombstones
    /// before it, become empty again.
    #[inline(always)]
    pub fn remove(&mut self, key: u64) -> Option<V> {
        if key <= TOMBSTONE {
            return self.special[key as usize].take();
        }
        let slot = self.find(key).ok()?;
        let value = self.values[slot];
        let mask = self.mask();
        if self.keys[(slot + 1) & mask] == EMPTY {
            self.keys[slot] = EMPTY;
            let mut before = slot.wrapping_sub(1) & mask;
            while self.keys[before] == TOMBSTONE {
                self.keys[before] = EMPTY;
                self.tombstones -= 1;
                before = before.wrapping_sub(1) & mask;
            }
        } else {
            self.keys[slot] = TOMBSTONE;
            self.tombstones += 1;
        }
        self.len -= 1;
        Some(value)
    }

    /// Rehashes without tombstones: into twice the slots once keys fill half of them, else
    /// into as many.
    #[cold]
    #[inline(never)]
    fn rebuild(&mut self) {
        let slots = if (self.len + 1) * 2 > self.keys.len() {
            self.keys.len() * 2
        } else {
            self.keys.len()
        };
        let mut fresh = AddrMap::with_slots(slots);
        for (&key, &value) in self.keys.iter().zip(&self.values) {
            if key > TOMBSTONE {
                let slot = fresh.find(key).unwrap_or_else(|slot| slot);
                fresh.keys[slot] = key;
                fresh.values[slot] = value;
            }
        }
        fresh.len = self.len;
        fresh.special = self.special;
        *self = fresh;
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        let special = [EMPTY, TOMBSTONE]
            .into_iter()
            .zip(&self.special)
            .filter_map(|(key, value)| Some((key, value.as_ref()?)));
        special.chain(
            self.keys
                .iter()
                .zip(&self.values)
                .filter(|(k, _)| **k > TOMBSTONE)
                .map(|(k, v)| (*k, v)),
        )
    }
}

#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint: it never faults and reads nothing the program sees,
        // whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A random mix of inserts, replacing inserts and removes agrees with std's HashMap at
    /// every step, through several grows and long probe runs (keys that share home slots).
    #[test]
    fn agrees_with_hashmap() {
        let mut ours: AddrMap<u64> = AddrMap::default();
        let mut theirs: HashMap<u64, u64> = HashMap::new();
        let mut state = 0x1234_5678_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..200_000u64 {
            let r = next();
            // Few distinct keys (so removes hit) spread like heap addresses; 0 and 1 included.
            let key = match r % 97 {
                0 => 0,
                1 => 1,
                _ => (r % 4096) * 16,
            };
            if r >> 60 < 9 {
                assert_eq!(
                    ours.insert(key, step),
                    theirs.insert(key, step),
                    "insert {key}"
                );
            } else {
                assert_eq!(ours.remove(key), theirs.remove(&key), "remove {key}");
            }
            let special = ours.special.iter().flatten().count();
            assert_eq!(ours.len + special, theirs.len());
        }
        assert_eq!(
            ours.tombstones,
            ours.keys.iter().filter(|&&k| k == TOMBSTONE).count()
        );
        let mut all: Vec<(u64, u64)> = ours.iter().map(|(k, v)| (k, *v)).collect();
        let mut expected: Vec<(u64, u64)> = theirs.into_iter().collect();
        all.sort_unstable();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    #[test]
    fn removing_everything_empties_the_table() {
        let mut map: AddrMap<u32> = AddrMap::default();
        for i in 1..=10_000u64 {
            map.insert(i * 16, i as u32);
        }
        for i in (1..=10_000u64).rev() {
            assert_eq!(map.remove(i * 16), Some(i as u32));
        }
        assert_eq!(map.len, 0);
        assert_eq!(map.iter().count(), 0);
        assert!(map.keys.iter().all(|&k| k <= TOMBSTONE));
        assert_eq!(
            map.tombstones,
            map.keys.iter().filter(|&&k| k == TOMBSTONE).count()
        );
    }
}
