//! The little DWARF this module reads: where a function's parameters are at its entry, and
//! struct member offsets, from the compilation unit that contains a given address.

use gimli::{
    AttributeValue, DebuggingInformationEntry, EndianSlice, LittleEndian, Operation, Unit,
    UnitOffset, constants,
};
use iced_x86::Register;

use super::{binary::Binary, regs};

type R<'a> = EndianSlice<'a, LittleEndian>;

/// A formal parameter of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Param {
    pub name: String,
    /// The register holding it at the function's first instruction, when DWARF says so.
    pub register_at_entry: Option<Register>,
    /// Its value when the compiler specialised the function for a constant argument
    /// (`DW_AT_const_value` in a `.constprop` clone).
    pub const_value: Option<i64>,
}

/// A function's DWARF description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FunctionInfo {
    pub name: String,
    pub params: Vec<Param>,
    pub returns_value: bool,
}

/// A struct's members and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StructLayout {
    pub size: u64,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub name: String,
    pub offset: u64,
    /// Element count when the member is an array.
    pub array_len: Option<u64>,
    /// Bit-field members: the first bit (from bit 0 of the containing storage unit at
    /// `offset`, little-endian) and the width.
    pub bits: Option<(u64, u64)>,
    /// The member's type entry, to follow into nested structs.
    pub ty: Option<UnitOffset>,
}

impl StructLayout {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// One compilation unit of a file's DWARF.
pub(crate) struct CompUnit<'a> {
    dwarf: gimli::Dwarf<R<'a>>,
    unit: Unit<R<'a>>,
}

/// The compilation unit whose code contains `pc`; `None` without (uncompressed) DWARF.
pub(crate) fn unit_for(bin: &Binary, pc: u64) -> Option<CompUnit<'_>> {
    if bin.section(".debug_info")?.compressed {
        return None;
    }
    let dwarf = gimli::Dwarf::load(|id| -> Result<R<'_>, gimli::Error> {
        Ok(EndianSlice::new(
            bin.section_data(id.name()).unwrap_or(&[]),
            LittleEndian,
        ))
    })
    .ok()?;
    // .debug_aranges first (one lookup), then every unit's ranges.
    let mut headers = dwarf.debug_aranges.headers();
    while let Ok(Some(header)) = headers.next() {
        let mut entries = header.entries();
        while let Ok(Some(entry)) = entries.next() {
            let range = entry.range();
            if range.begin <= pc && pc < range.end {
                let info = dwarf
                    .debug_info
                    .header_from_offset(header.debug_info_offset());
                if let Some(unit) = info.ok().and_then(|h| dwarf.unit(h).ok()) {
                    return Some(CompUnit { dwarf, unit });
                }
            }
        }
    }
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let mut ranges = match dwarf.unit_ranges(&unit) {
            Ok(r) => r,
            Err(_) => continue,
        };
        while let Ok(Some(range)) = ranges.next() {
            if range.begin <= pc && pc < range.end {
                return Some(CompUnit { dwarf, unit });
            }
        }
    }
    None
}

impl<'a> CompUnit<'a> {
    fn string(&self, value: AttributeValue<R<'a>>) -> Option<String> {
        self.dwarf
            .attr_string(&self.unit, value)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    }

    /// An entry's name, following `DW_AT_abstract_origin`/`DW_AT_specification` in this unit.
    fn name(&self, entry: &DebuggingInformationEntry<R<'a>>) -> Option<String> {
        if let Some(value) = entry.attr_value(constants::DW_AT_name) {
            return self.string(value);
        }
        for link in [
            constants::DW_AT_abstract_origin,
            constants::DW_AT_specification,
        ] {
            if let Some(AttributeValue::UnitRef(offset)) = entry.attr_value(link)
                && let Ok(origin) = self.unit.entry(offset)
            {
                return self.name(&origin);
            }
        }
        None
    }

    fn children(&self, offset: UnitOffset) -> Vec<DebuggingInformationEntry<R<'a>>> {
        let mut out = Vec::new();
        let Ok(mut tree) = self.unit.entries_tree(Some(offset)) else {
            return out;
        };
        let Ok(root) = tree.root() else {
            return out;
        };
        let mut children = root.children();
        while let Ok(Some(child)) = children.next() {
            out.push(child.entry().clone());
        }
        out
    }

    /// The first entry (depth-first) satisfying `pred`.
    fn find(
        &self,
        mut pred: impl FnMut(&DebuggingInformationEntry<R<'a>>) -> bool,
    ) -> Option<DebuggingInformationEntry<R<'a>>> {
        let mut cursor = self.unit.entries();
        while let Ok(Some(entry)) = cursor.next_dfs() {
            if pred(entry) {
                return Some(entry.clone());
            }
        }
        None
    }

    /// Whether the entry (or its abstract origin) has `DW_AT_type`: a non-void function.
    fn has_type(&self, entry: &DebuggingInformationEntry<R<'a>>) -> bool {
        if entry.attr_value(constants::DW_AT_type).is_some() {
            return true;
        }
        [
            constants::DW_AT_abstract_origin,
            constants::DW_AT_specification,
        ]
        .into_iter()
        .any(|link| {
            matches!(entry.attr_value(link), Some(AttributeValue::UnitRef(offset))
                    if self.unit.entry(offset).is_ok_and(|origin| self.has_type(&origin)))
        })
    }

    /// The out-of-line function starting at `pc`: its parameters with their registers at
    /// entry (from `DW_AT_location`: an expression or the location-list entry covering `pc`),
    /// and whether it returns a value.
    pub fn function_at(&self, pc: u64) -> Option<FunctionInfo> {
        let function = self.find(|e| {
            e.tag() == constants::DW_TAG_subprogram
                && matches!(e.attr_value(constants::DW_AT_low_pc), Some(AttributeValue::Addr(a)) if a == pc)
        })?;
        let name = self.name(&function)?;
        let params = self
            .children(function.offset())
            .iter()
            .filter(|e| e.tag() == constants::DW_TAG_formal_parameter)
            .map(|e| Param {
                name: self.name(e).unwrap_or_default(),
                register_at_entry: self.register_at(e, pc),
                const_value: e.attr_value(constants::DW_AT_const_value).and_then(|v| {
                    v.sdata_value()
                        .or_else(|| v.udata_value().and_then(|u| i64::try_from(u).ok()))
                }),
            })
            .collect();
        Some(FunctionInfo {
            name,
            params,
            returns_value: self.has_type(&function),
        })
    }

    fn register_at(&self, entry: &DebuggingInformationEntry<R<'a>>, pc: u64) -> Option<Register> {
        let value = entry.attr_value(constants::DW_AT_location)?;
        let expression = match value {
            AttributeValue::Exprloc(expr) => expr,
            other => {
                let mut locations = self.dwarf.attr_locations(&self.unit, other).ok()??;
                loop {
                    let location = locations.next().ok()??;
                    if location.range.begin <= pc && pc < location.range.end {
                        break location.data;
                    }
                }
            }
        };
        let mut ops = expression.operations(self.unit.encoding());
        let first = ops.next().ok()??;
        let Operation::Register { register } = first else {
            return None;
        };
        // A bare `DW_OP_regN` (optionally followed by a piece covering the whole value).
        match ops.next().ok()? {
            None | Some(Operation::Piece { .. }) => regs::from_dwarf(register.0),
            Some(_) => None,
        }
    }

    /// The layout of `struct name` (a definition, not a declaration).
    pub fn struct_layout(&self, name: &str) -> Option<StructLayout> {
        let entry = self.find(|e| {
            e.tag() == constants::DW_TAG_structure_type
                && e.attr_value(constants::DW_AT_declaration).is_none()
                && e.attr_value(constants::DW_AT_name)
                    .and_then(|v| self.string(v))
                    .is_some_and(|n| n == name)
        })?;
        self.layout_of(&entry)
    }

    /// The layout of the struct a C type name denotes: `struct name`, or the struct a `typedef`
    /// of that name stands for (CPython's `typedef struct { ... } PyASCIIObject;` has no tag).
    pub fn type_layout(&self, name: &str) -> Option<StructLayout> {
        if let Some(layout) = self.struct_layout(name) {
            return Some(layout);
        }
        let typedef = self.find(|e| {
            e.tag() == constants::DW_TAG_typedef
                && e.attr_value(constants::DW_AT_name)
                    .and_then(|v| self.string(v))
                    .is_some_and(|n| n == name)
        })?;
        let AttributeValue::UnitRef(ty) = typedef.attr_value(constants::DW_AT_type)? else {
            return None;
        };
        self.layout_at(ty)
    }

    /// The struct layout of the type at `offset`, through typedefs and qualifiers; a
    /// declaration (`struct _ts;` in a header) is looked up by name as a definition.
    pub fn layout_at(&self, offset: UnitOffset) -> Option<StructLayout> {
        let mut offset = offset;
        // Typedef and qualifier chains are short; the bound guards against a cyclic DIE graph
        // in a damaged file.
        for _ in 0..16 {
            let entry = self.unit.entry(offset).ok()?;
            match entry.tag() {
                constants::DW_TAG_structure_type | constants::DW_TAG_union_type => {
                    if entry.attr_value(constants::DW_AT_declaration).is_some() {
                        let name = self.string(entry.attr_value(constants::DW_AT_name)?)?;
                        return self.struct_layout(&name);
                    }
                    return self.layout_of(&entry);
                }
                constants::DW_TAG_typedef
                | constants::DW_TAG_const_type
                | constants::DW_TAG_volatile_type
                | constants::DW_TAG_atomic_type => {
                    let AttributeValue::UnitRef(next) = entry.attr_value(constants::DW_AT_type)?
                    else {
                        return None;
                    };
                    offset = next;
                }
                _ => return None,
            }
        }
        None
    }

    fn layout_of(&self, entry: &DebuggingInformationEntry<R<'a>>) -> Option<StructLayout> {
        let size = entry
            .attr_value(constants::DW_AT_byte_size)?
            .udata_value()?;
        let members = self
            .children(entry.offset())
            .iter()
            .filter(|e| e.tag() == constants::DW_TAG_member)
            .filter_map(|e| {
                let offset = match e.attr_value(constants::DW_AT_data_member_location) {
                    Some(AttributeValue::Exprloc(expr)) => {
                        match expr.operations(self.unit.encoding()).next().ok()?? {
                            Operation::PlusConstant { value } => value,
                            _ => return None,
                        }
                    }
                    Some(value) => value.udata_value()?,
                    // Bit-fields in DWARF 4+ carry DW_AT_data_bit_offset instead.
                    None => 0,
                };
                let bit_size = e
                    .attr_value(constants::DW_AT_bit_size)
                    .and_then(|v| v.udata_value());
                let bits = bit_size.and_then(|width| {
                    let first = e
                        .attr_value(constants::DW_AT_data_bit_offset)?
                        .udata_value()?;
                    Some((first, width))
                });
                // Express a bit-field as (byte of its storage unit, bit within it).
                let (offset, bits) = match bits {
                    Some((first, width)) => (offset + first / 32 * 4, Some((first % 32, width))),
                    None => (offset, None),
                };
                Some(Member {
                    name: self.name(e)?,
                    offset,
                    array_len: self.array_len(e),
                    bits,
                    ty: match e.attr_value(constants::DW_AT_type) {
                        Some(AttributeValue::UnitRef(ty)) => Some(ty),
                        _ => None,
                    },
                })
            })
            .collect();
        Some(StructLayout { size, members })
    }

    /// The offset (and bits, for a bit-field) of `path` (`["gilstate", "tstate_current"]`)
    /// inside the struct `layout`, following nested struct members.
    pub fn member_path(&self, layout: &StructLayout, path: &[&str]) -> Option<Member> {
        let (first, rest) = path.split_first()?;
        let member = layout.member(first)?.clone();
        if rest.is_empty() {
            return Some(member);
        }
        let inner = self.layout_at(member.ty?)?;
        let nested = self.member_path(&inner, rest)?;
        Some(Member {
            offset: member.offset + nested.offset,
            ..nested
        })
    }

    fn array_len(&self, member: &DebuggingInformationEntry<R<'a>>) -> Option<u64> {
        let AttributeValue::UnitRef(ty) = member.attr_value(constants::DW_AT_type)? else {
            return None;
        };
        let ty_entry = self.unit.entry(ty).ok()?;
        if ty_entry.tag() != constants::DW_TAG_array_type {
            return None;
        }
        let subrange = self
            .children(ty)
            .into_iter()
            .find(|e| e.tag() == constants::DW_TAG_subrange_type)?;
        if let Some(count) = subrange.attr_value(constants::DW_AT_count) {
            return count.udata_value();
        }
        subrange
            .attr_value(constants::DW_AT_upper_bound)?
            .udata_value()
            .and_then(|upper| upper.checked_add(1))
    }
}
