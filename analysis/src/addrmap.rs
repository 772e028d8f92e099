//! The table of live blocks by address: open addressing with linear probing, keys and values
//! in separate arrays, and a [`AddrMap::prefetch`] that starts the cache misses of a lookup
//! before it is made.
//!
//! Written by hand because the replay's cost is the cache miss, not the hashing: every row looks
//! up one address, at random, among up to millions of live blocks. A `HashMap` (std's or
//! hashbrown's) hides where a key's slot is until the lookup itself, so the miss cannot be
//! started a few rows ahead; here the slot is a multiply and a shift. Keys alone are probed
//! (eight per cache line), so a lookup touches one line of keys and one value.

/// Marks an empty slot. Address 0 is never a live block, but it is still a valid key
/// (kept aside in `zero`) so the map has no hidden precondition.
const EMPTY: u64 = 0;
const MIN_SLOTS: usize = 16;

/// Most occupied slots per slot, as a fraction: linear probing stays short up to about 3/4.
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

#[derive(Clone, Debug)]
pub struct AddrMap<V> {
    keys: Vec<u64>,
    values: Vec<V>,
    /// Occupied slots (the `zero` key not included).
    len: usize,
    /// `64 - log2(slots)`: the top bits of the multiplied key are the home slot.
    shift: u32,
    zero: Option<V>,
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
            shift: 64 - slots.trailing_zeros(),
            zero: None,
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

    /// The slot holding `key` (not `EMPTY`), or the empty slot where it would go.
    #[inline]
    fn find(&self, key: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut slot = self.home(key);
        loop {
            match self.keys[slot] {
                k if k == key => return (slot, true),
                EMPTY => return (slot, false),
                _ => slot = (slot + 1) & mask,
            }
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
    #[inline]
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        if key == EMPTY {
            return self.zero.replace(value);
        }
        let (mut slot, found) = self.find(key);
        if found {
            return Some(std::mem::replace(&mut self.values[slot], value));
        }
        if (self.len + 1) * LOAD_DEN > self.keys.len() * LOAD_NUM {
            self.grow();
            slot = self.find(key).0;
        }
        self.keys[slot] = key;
        self.values[slot] = value;
        self.len += 1;
        None
    }

    /// Takes `key` out, returning its value.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<V> {
        if key == EMPTY {
            return self.zero.take();
        }
        let (slot, found) = self.find(key);
        if !found {
            return None;
        }
        let value = self.values[slot];
        self.close_hole(slot);
        self.len -= 1;
        Some(value)
    }

    /// Backward-shift deletion: moves later keys of the probe run into the hole when the hole
    /// lies between their home slot and where they sit, so lookups never need tombstones.
    fn close_hole(&mut self, mut hole: usize) {
        let mask = self.mask();
        let mut next = (hole + 1) & mask;
        loop {
            let key = self.keys[next];
            if key == EMPTY {
                break;
            }
            let home = self.home(key);
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.keys[hole] = key;
                self.values[hole] = self.values[next];
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.keys[hole] = EMPTY;
    }

    fn grow(&mut self) {
        let mut bigger = AddrMap::with_slots(self.keys.len() * 2);
        for (&key, &value) in self.keys.iter().zip(&self.values) {
            if key != EMPTY {
                let slot = bigger.find(key).0;
                bigger.keys[slot] = key;
                bigger.values[slot] = value;
            }
        }
        bigger.len = self.len;
        bigger.zero = self.zero;
        *self = bigger;
    }

    /// Every (key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.zero.iter().map(|v| (EMPTY, v)).chain(
            self.keys
                .iter()
                .zip(&self.values)
                .filter(|(k, _)| **k != EMPTY)
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
            // Few distinct keys (so removes hit) spread like heap addresses; 0 included.
            let key = (r % 4096) * 16 * u64::from(r % 97 != 0);
            if r >> 60 < 9 {
                assert_eq!(
                    ours.insert(key, step),
                    theirs.insert(key, step),
                    "insert {key}"
                );
            } else {
                assert_eq!(ours.remove(key), theirs.remove(&key), "remove {key}");
            }
            assert_eq!(ours.len + usize::from(ours.zero.is_some()), theirs.len());
        }
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
        assert!(map.keys.iter().all(|&k| k == EMPTY));
    }
}
