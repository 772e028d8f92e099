//! CPython's allocator tables: `_PyMem_Raw`, `_PyMem`, `_PyObject` (`PyMemAllocatorEx`:
//! ctx, malloc, calloc, realloc, free) and `_PyObject_Arena` (`PyObjectArenaAllocator`: ctx,
//! alloc, free), with the default functions their static initializers hold.
//!
//! With a symbol table the tables are found by name. In a stripped build they are found
//! through the exported functions that call through them: `PyObject_Malloc` reads
//! `_PyObject.malloc` (table + 8), `PyObject_Free` reads `_PyObject.free` (table + 32), ...;
//! the table is the one address consistent with every exported function of the domain.
//! `PyObject_GetArenaAllocator` copies `_PyObject_Arena` whole, so the lowest address it reads
//! is that table. The slot values are the loader's values: `R_X86_64_RELATIVE` addends in a
//! position-independent file, the stored bytes otherwise.

use std::collections::{BTreeMap, BTreeSet};

use super::binary::Binary;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub name: &'static str,
    pub address: u64,
    /// The symbol or exported function it was found through.
    pub via: &'static str,
    /// Slot `i` (1-based after ctx) → default function address, when it is code.
    pub slots: Vec<Option<u64>>,
}

impl Table {
    pub fn slot(&self, slot: u8) -> Option<u64> {
        self.slots
            .get(usize::from(slot).checked_sub(1)?)
            .copied()
            .flatten()
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Tables {
    pub raw: Option<Table>,
    pub mem: Option<Table>,
    pub obj: Option<Table>,
    pub arena: Option<Table>,
}

/// Exported functions per domain table, with the slot each calls through.
const RAW_API: [(&str, u8); 4] = [
    ("PyMem_RawMalloc", 1),
    ("PyMem_RawCalloc", 2),
    ("PyMem_RawRealloc", 3),
    ("PyMem_RawFree", 4),
];
const MEM_API: [(&str, u8); 4] = [
    ("PyMem_Malloc", 1),
    ("PyMem_Calloc", 2),
    ("PyMem_Realloc", 3),
    ("PyMem_Free", 4),
];
const OBJ_API: [(&str, u8); 4] = [
    ("PyObject_Malloc", 1),
    ("PyObject_Calloc", 2),
    ("PyObject_Realloc", 3),
    ("PyObject_Free", 4),
];

fn rip_addresses(bin: &Binary, function: &str) -> Vec<u64> {
    let Some(func) = bin.function(function) else {
        return Vec::new();
    };
    let Some(code) = bin.function_code(func.address, func.size, 1024) else {
        return Vec::new();
    };
    let instructions = Binary::decode(code, func.address);
    bin.data_addresses(&instructions)
        .into_iter()
        .map(|(_, address)| address)
        .collect()
}

fn read_slots(bin: &Binary, address: u64, count: u8) -> Vec<Option<u64>> {
    (1..=u64::from(count))
        .map(|slot| {
            address
                .checked_add(8 * slot)
                .and_then(|a| bin.pointer_at(a))
                .filter(|&f| bin.is_executable_address(f))
        })
        .collect()
}

/// The table that every present exported function of `api` reads its slot of, excluding
/// addresses of already-known tables.
fn table_from_api(
    bin: &Binary,
    name: &'static str,
    api: &[(&'static str, u8)],
    exclude: &[u64],
) -> Option<Table> {
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    let mut wrappers = 0;
    let mut via = None;
    for &(function, slot) in api {
        let candidates: BTreeSet<u64> = rip_addresses(bin, function)
            .into_iter()
            .filter_map(|a| a.checked_sub(8 * u64::from(slot)))
            .collect();
        if candidates.is_empty() {
            continue;
        }
        wrappers += 1;
        via.get_or_insert(function);
        for c in candidates {
            *votes.entry(c).or_default() += 1;
        }
    }
    let mut best: Vec<u64> = votes
        .into_iter()
        .filter(|&(address, n)| n == wrappers && !exclude.contains(&address))
        .map(|(address, _)| address)
        .filter(|&address| read_slots(bin, address, 4).iter().all(Option::is_some))
        .collect();
    if wrappers < 2 || best.len() != 1 {
        return None;
    }
    let address = best.pop()?;
    Some(Table {
        name,
        address,
        via: via?,
        slots: read_slots(bin, address, 4),
    })
}

fn table_by_symbol(bin: &Binary, name: &'static str, slots: u8) -> Option<Table> {
    let sym = bin.object(name)?;
    Some(Table {
        name,
        address: sym.address,
        via: name,
        slots: read_slots(bin, sym.address, slots),
    })
}

fn arena_from_api(bin: &Binary) -> Option<Table> {
    let via = "PyObject_GetArenaAllocator";
    let address = rip_addresses(bin, via).into_iter().min()?;
    let slots = read_slots(bin, address, 2);
    slots.iter().all(Option::is_some).then_some(Table {
        name: "_PyObject_Arena",
        address,
        via,
        slots,
    })
}

impl Tables {
    pub fn recover(bin: &Binary) -> Tables {
        let raw = table_by_symbol(bin, "_PyMem_Raw", 4)
            .or_else(|| table_from_api(bin, "_PyMem_Raw", &RAW_API, &[]));
        let known: Vec<u64> = raw.iter().map(|t| t.address).collect();
        let mem = table_by_symbol(bin, "_PyMem", 4)
            .or_else(|| table_from_api(bin, "_PyMem", &MEM_API, &known));
        let obj = table_by_symbol(bin, "_PyObject", 4)
            .or_else(|| table_from_api(bin, "_PyObject", &OBJ_API, &known));
        let arena = table_by_symbol(bin, "_PyObject_Arena", 2).or_else(|| arena_from_api(bin));
        Tables {
            raw,
            mem,
            obj,
            arena,
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &Table> {
        [&self.raw, &self.mem, &self.obj, &self.arena]
            .into_iter()
            .flatten()
    }

    /// The table slot at `address` (e.g. `_PyObject + 8`), with its default function.
    pub fn slot_at(&self, address: u64) -> Option<(&Table, u8, u64)> {
        self.all().find_map(|t| {
            let offset = address.checked_sub(t.address)?;
            if offset % 8 != 0 || offset == 0 {
                return None;
            }
            let slot = u8::try_from(offset / 8).ok()?;
            Some((t, slot, t.slot(slot)?))
        })
    }
}
