//! What alloctrace reads from a Go binary's DWARF: member offsets of runtime structs, addresses
//! of runtime globals, and the parameter names of some runtime functions.
//!
//! Go's linker writes zlib-compressed sections (`SHF_COMPRESSED`, Go 1.27.3
//! `src/cmd/link/internal/ld/data.go` `compressSyms`); Go 1.19 writes DWARF 4, Go 1.27 DWARF 5.
//! Types live in their own compilation unit and are referenced across units, so every unit is
//! scanned.

use std::{collections::HashMap, io::Read as _};

use gimli::{AttributeValue, DebugInfoOffset, EndianSlice, LittleEndian, Unit};

use super::file::GoFile;

/// A struct member: byte offset and the DWARF type it has.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub offset: u64,
    pub type_ref: Option<usize>,
}

/// How a type's size is known: directly, or through a typedef.
#[derive(Clone, Copy, Debug)]
enum SizeOf {
    Bytes(u64),
    Alias(usize),
}

#[derive(Debug, Default)]
pub(super) struct DwarfFacts {
    structs: HashMap<String, HashMap<String, Member>>,
    variables: HashMap<String, u64>,
    params: HashMap<String, Vec<String>>,
    sizes: HashMap<usize, SizeOf>,
}

impl DwarfFacts {
    /// The member `field` of struct `name`.
    pub fn member(&self, name: &str, field: &str) -> Result<Member, String> {
        let members = self
            .structs
            .get(name)
            .ok_or_else(|| format!("no DWARF struct {name}"))?;
        members
            .get(field)
            .copied()
            .ok_or_else(|| format!("DWARF struct {name} has no member {field}"))
    }

    /// The byte size of the type at `type_ref` (through typedefs).
    pub fn size_of(&self, type_ref: usize) -> Option<u64> {
        let mut at = type_ref;
        for _ in 0..16 {
            match self.sizes.get(&at)? {
                SizeOf::Bytes(n) => return Some(*n),
                SizeOf::Alias(next) => at = *next,
            }
        }
        None
    }

    /// The link-time address of the global `name` (`DW_OP_addr`).
    pub fn variable(&self, name: &str) -> Option<u64> {
        self.variables.get(name).copied()
    }

    /// The input parameter names of function `name`, in order.
    pub fn params(&self, name: &str) -> Option<&[String]> {
        self.params.get(name).map(Vec::as_slice)
    }
}

/// Which names to collect.
pub(super) struct Wanted<'a> {
    pub structs: &'a [&'a str],
    pub variables: &'a [&'a str],
    pub function: &'a dyn Fn(&str) -> bool,
}

const MAX_SECTION: u64 = 1 << 30;

fn load_section(file: &GoFile, name: &str) -> Result<Vec<u8>, String> {
    let Some(section) = file.section_file_data(name) else {
        return Ok(Vec::new());
    };
    match section.format {
        object::CompressionFormat::None => Ok(section.data.to_vec()),
        object::CompressionFormat::Zlib => {
            if section.uncompressed_size > MAX_SECTION {
                return Err(format!(
                    "{name}: uncompressed size {} too large",
                    section.uncompressed_size
                ));
            }
            let mut out =
                Vec::with_capacity(usize::try_from(section.uncompressed_size).unwrap_or(0));
            flate2::read::ZlibDecoder::new(section.data)
                .take(section.uncompressed_size)
                .read_to_end(&mut out)
                .map_err(|e| format!("{name}: bad zlib data: {e}"))?;
            Ok(out)
        }
        other => Err(format!("{name}: unsupported compression {other:?}")),
    }
}

/// Whether the file has DWARF type information at all.
pub(super) fn present(file: &GoFile) -> bool {
    file.sections
        .iter()
        .any(|s| s.name == ".debug_info" || s.name == ".zdebug_info")
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

fn name_of(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
) -> Option<String> {
    let value = entry.attr_value(gimli::DW_AT_name)?;
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(s.to_string_lossy().into_owned())
}

fn type_ref(
    unit: &Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
) -> Option<usize> {
    match entry.attr_value(gimli::DW_AT_type)? {
        AttributeValue::UnitRef(off) => off.to_debug_info_offset(&unit.header).map(|o| o.0),
        AttributeValue::DebugInfoRef(DebugInfoOffset(o)) => Some(o),
        _ => None,
    }
}

fn location_address(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
) -> Option<u64> {
    let expr = entry.attr_value(gimli::DW_AT_location)?.exprloc_value()?;
    let bytes = expr.0.slice();
    match bytes.first()? {
        0x03 if bytes.len() == 9 => Some(u64::from_le_bytes(bytes[1..9].try_into().ok()?)),
        0xa1 => {
            let (index, _) = super::buildinfo::uvarint(&bytes[1..])?;
            dwarf
                .address(unit, gimli::DebugAddrIndex(usize::try_from(index).ok()?))
                .ok()
        }
        _ => None,
    }
}

/// Reads the wanted facts from every compilation unit.
pub(super) fn read(file: &GoFile, wanted: &Wanted<'_>) -> Result<DwarfFacts, String> {
    let sections = gimli::DwarfSections::load(|id| load_section(file, id.name()))?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    let mut facts = DwarfFacts::default();
    let mut units = dwarf.units();
    let err = |e: gimli::Error| format!("DWARF: {e}");
    while let Some(header) = units.next().map_err(err)? {
        let unit = dwarf.unit(header).map_err(err)?;
        let mut cursor = unit.entries();
        // The struct or function whose children are being read, with its depth.
        let mut in_struct: Option<(String, isize)> = None;
        let mut in_func: Option<(String, isize)> = None;
        while let Some(entry) = cursor.next_dfs().map_err(err)? {
            let depth = entry.depth();
            if in_struct.as_ref().is_some_and(|(_, d)| depth <= *d) {
                in_struct = None;
            }
            if in_func.as_ref().is_some_and(|(_, d)| depth <= *d) {
                in_func = None;
            }
            let here = entry
                .offset()
                .to_debug_info_offset(&unit.header)
                .map(|o| o.0);
            if let Some(here) = here {
                if let Some(n) = entry
                    .attr_value(gimli::DW_AT_byte_size)
                    .and_then(|v| v.udata_value())
                {
                    facts.sizes.insert(here, SizeOf::Bytes(n));
                } else if entry.tag() == gimli::DW_TAG_typedef
                    && let Some(target) = type_ref(&unit, entry)
                {
                    facts.sizes.insert(here, SizeOf::Alias(target));
                }
            }
            match entry.tag() {
                gimli::DW_TAG_structure_type => {
                    if let Some(name) = name_of(&dwarf, &unit, entry)
                        && wanted.structs.contains(&name.as_str())
                    {
                        facts.structs.entry(name.clone()).or_default();
                        in_struct = Some((name, depth));
                    }
                }
                gimli::DW_TAG_member => {
                    if let Some((sname, d)) = &in_struct
                        && depth == d + 1
                        && let Some(name) = name_of(&dwarf, &unit, entry)
                        && let Some(offset) = entry
                            .attr_value(gimli::DW_AT_data_member_location)
                            .and_then(|v| v.udata_value())
                    {
                        let member = Member {
                            offset,
                            type_ref: type_ref(&unit, entry),
                        };
                        if let Some(members) = facts.structs.get_mut(sname) {
                            members.insert(name, member);
                        }
                    }
                }
                // Globals are children of the unit; locals are deeper.
                gimli::DW_TAG_variable if depth == 1 => {
                    if let Some(name) = name_of(&dwarf, &unit, entry)
                        && wanted.variables.contains(&name.as_str())
                        && let Some(addr) = location_address(&dwarf, &unit, entry)
                    {
                        facts.variables.insert(name, addr);
                    }
                }
                gimli::DW_TAG_subprogram => {
                    if let Some(name) = name_of(&dwarf, &unit, entry)
                        && (wanted.function)(&name)
                    {
                        facts.params.entry(name.clone()).or_default();
                        in_func = Some((name, depth));
                    }
                }
                gimli::DW_TAG_formal_parameter => {
                    let is_result = matches!(
                        entry.attr_value(gimli::DW_AT_variable_parameter),
                        Some(AttributeValue::Flag(true))
                    );
                    if let Some((fname, d)) = &in_func
                        && depth == d + 1
                        && !is_result
                        && let Some(name) = name_of(&dwarf, &unit, entry)
                        && let Some(params) = facts.params.get_mut(fname)
                    {
                        params.push(name);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(facts)
}
