//! The Go version a binary was built with.
//!
//! `.go.buildinfo` starts with a 32-byte header: the 14-byte magic `"\xff Go buildinf:"`, the
//! pointer size, and a flags byte (Go 1.27.3 `src/debug/buildinfo/buildinfo.go`, lines 56-62 and
//! 196-257). With flag bit 1 set (Go ≥ 1.18) the version and module info follow the header as
//! two uvarint-length-prefixed strings; without it (Go < 1.18) the header holds two pointers to
//! Go string headers. When the section is missing the version is read from the
//! `runtime.buildVersion` string variable.

use super::file::GoFile;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_SIZE: u64 = 32;
const FLAGS_BIG_ENDIAN: u8 = 0x1;
const FLAGS_INLINE: u8 = 0x2;

/// A uvarint at the start of `bytes`: (value, bytes used).
pub(super) fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The version string from `.go.buildinfo`, whichever of its two layouts the file uses.
pub(super) fn from_buildinfo(file: &GoFile) -> Option<String> {
    let section = file.section_like(".go.buildinfo")?;
    let header = file.read(section.address, HEADER_SIZE)?;
    if &header[..14] != MAGIC {
        return None;
    }
    let ptr_size = header[14];
    let flags = header[15];
    if flags & FLAGS_INLINE != 0 {
        let rest = file.read(
            section.address.checked_add(HEADER_SIZE)?,
            section.size.saturating_sub(HEADER_SIZE),
        )?;
        let (len, used) = uvarint(rest)?;
        let bytes = rest.get(used..used.checked_add(usize::try_from(len).ok()?)?)?;
        return String::from_utf8(bytes.to_vec()).ok();
    }
    if flags & FLAGS_BIG_ENDIAN != 0 || ptr_size != 8 {
        return None;
    }
    let version_ptr = u64::from_le_bytes(header[16..24].try_into().ok()?);
    file.read_go_string(version_ptr)
}

/// The version from the `runtime.buildVersion` variable (needs the symbol table).
pub(super) fn from_runtime_symbol(file: &GoFile) -> Option<String> {
    let sym = file.symbol("runtime.buildVersion")?;
    file.read_go_string(sym.address)
}

/// `(major, minor)` of a version such as `go1.19.8`, `go1.27rc1` or `devel go1.23-abc…`.
pub(super) fn parse_tuple(version: &str) -> Option<(u32, u32)> {
    let at = version.find("go")?;
    let rest = &version[at + 2..];
    let mut parts = rest.splitn(2, '.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor_text = parts.next()?;
    let digits: String = minor_text
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check version tuples of release, release-candidate and development version strings.
    #[test]
    fn version_tuples() {
        assert_eq!(parse_tuple("go1.19.8"), Some((1, 19)));
        assert_eq!(parse_tuple("go1.27.3"), Some((1, 27)));
        assert_eq!(parse_tuple("go1.21rc2"), Some((1, 21)));
        assert_eq!(parse_tuple("go1.20"), Some((1, 20)));
        assert_eq!(
            parse_tuple("devel go1.23-1a2b3c Tue Jan 1 00:00:00 2024 +0000"),
            Some((1, 23))
        );
        assert_eq!(parse_tuple("unknown"), None);
    }

    /// Check uvarint decoding, including a truncated one.
    #[test]
    fn uvarints() {
        assert_eq!(uvarint(&[0x08]), Some((8, 1)));
        assert_eq!(uvarint(&[0x93, 0x03]), Some((403, 2)));
        assert_eq!(uvarint(&[0x80]), None);
    }
}
