//! Names of runtime type descriptors (`*_type`, as passed to `mallocgc`).
//!
//! `abi.Type` (Go 1.27.3 `src/internal/abi/type.go` `type Type`; `_type` in Go 1.19
//! `src/runtime/type.go`, same layout) is `Size_ uintptr, PtrBytes uintptr, Hash u32, TFlag u8,
//! Align_ u8, FieldAlign_ u8, Kind_ u8, Equal *func, GCData *byte, Str NameOff (i32), PtrToThis
//! TypeOff (i32)`: on 64-bit, TFlag at +20 and Str at +40. `Str` is an offset from
//! `moduledata.types` (`resolveNameOff`, runtime/type.go) to an `abi.Name`: a flags byte, a
//! uvarint length (Go ≥ 1.17, `Name.ReadVarint`, abi/type.go), then the bytes. With
//! `TFlagExtraStar` (1<<1) set the stored name has a leading `*` that is not part of the type's
//! name (`Type.String`, runtime/type.go).

use super::{buildinfo::uvarint, file::GoFile};

const TFLAG_OFFSET: u64 = 20;
const STR_OFFSET: u64 = 40;
const TYPE_SIZE: u64 = 48;
const TFLAG_EXTRA_STAR: u8 = 1 << 1;

/// The types region `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TypesRegion {
    pub start: u64,
    pub end: u64,
}

/// The name of the type descriptor at `type_addr`, or `None` when it is not a descriptor in
/// this binary's types region.
pub(super) fn type_name(file: &GoFile, region: TypesRegion, type_addr: u64) -> Option<String> {
    if type_addr < region.start || type_addr.checked_add(TYPE_SIZE)? > region.end {
        return None;
    }
    // type_addr + TYPE_SIZE did not overflow.
    let tflag = file.read_u8(type_addr + TFLAG_OFFSET)?;
    let str_off = i32::from_le_bytes(file.read_u32(type_addr + STR_OFFSET)?.to_le_bytes());
    let name_addr = region.start.checked_add_signed(i64::from(str_off))?;
    if name_addr < region.start || name_addr >= region.end {
        return None;
    }
    let avail = (region.end - name_addr).min(1 << 20);
    let bytes = file.read(name_addr, avail)?;
    let (len, used) = uvarint(bytes.get(1..)?)?;
    let start = 1 + used;
    let name = bytes.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
    let name = std::str::from_utf8(name).ok()?;
    let name = if tflag & TFLAG_EXTRA_STAR != 0 {
        name.strip_prefix('*').unwrap_or(name)
    } else {
        name
    };
    Some(name.to_owned())
}
