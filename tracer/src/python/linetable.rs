//! CPython 3.11's location table (`co_linetable`): which source line each bytecode instruction
//! comes from.
//!
//! Written by hand: no crate decodes this format, and it is small. The format is CPython's
//! `Objects/locations.md` (3.11): a sequence of entries, each covering 1–8 code units (2-byte
//! instructions and their inline caches). An entry's first byte has bit 7 set, the location
//! kind in bits 3–6 and (length − 1) in bits 0–2; what follows depends on the kind:
//!
//! | kind | meaning | line | bytes after the first |
//! | --- | --- | --- | --- |
//! | 0–9 | short form | same as the previous entry | 1 (columns) |
//! | 10–12 | one-line form | previous + (kind − 10) | 2 (start and end column) |
//! | 13 | no column | previous + signed varint | varint |
//! | 14 | long form | previous + signed varint | signed varint, then 3 varints (end line delta, columns) |
//! | 15 | no location | none (the line does not change) | none |
//!
//! Varints are little-endian groups of 6 bits, bit 6 meaning "more follows"; a signed varint
//! holds `(|v| << 1) | sign`. Lines start at `co_firstlineno`.

/// The source line of the instruction at `code_unit` (index in 2-byte units from the start of
/// the bytecode), or `None` when the entry has no location or the table ends before it.
/// `firstlineno` is `co_firstlineno`.
pub fn line_for(table: &[u8], firstlineno: i32, code_unit: u32) -> Option<u32> {
    let mut reader = Reader { table, pos: 0 };
    let mut line = i64::from(firstlineno);
    let mut unit: u64 = 0;
    while reader.pos < table.len() {
        let first = reader.byte()?;
        if first & 0x80 == 0 {
            // Not the start of an entry: a damaged table.
            return None;
        }
        let kind = (first >> 3) & 0x0f;
        let length = u64::from(first & 0x07) + 1;
        let this_line = match kind {
            15 => None,
            14 => {
                line += reader.svarint()?;
                reader.varint()?; // end line delta
                reader.varint()?; // column + 1
                reader.varint()?; // end column + 1
                Some(line)
            }
            13 => {
                line += reader.svarint()?;
                Some(line)
            }
            10..=12 => {
                line += i64::from(kind - 10);
                reader.byte()?;
                reader.byte()?;
                Some(line)
            }
            _ => {
                reader.byte()?;
                Some(line)
            }
        };
        if u64::from(code_unit) < unit + length {
            return this_line.and_then(|l| u32::try_from(l).ok());
        }
        unit += length;
    }
    None
}

struct Reader<'a> {
    table: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.table.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            value |= u64::from(b & 0x3f).checked_shl(shift)?;
            if b & 0x40 == 0 {
                return Some(value);
            }
            shift += 6;
            if shift >= 64 {
                return None;
            }
        }
    }

    fn svarint(&mut self) -> Option<i64> {
        let raw = self.varint()?;
        let magnitude = i64::try_from(raw >> 1).ok()?;
        Some(if raw & 1 != 0 { -magnitude } else { magnitude })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check each entry form on a hand-made table.
    #[test]
    fn forms() {
        let table = [
            // short form (kind 0), 2 units, line 10
            0x80 | 1,
            0x00,
            // one-line form +2 (kind 12), 1 unit: line 12
            0x80 | (12 << 3),
            4,
            9,
            // no location (kind 15), 3 units
            0x80 | (15 << 3) | 2,
            // no column (kind 13), line delta -3 (svarint 7): line 9
            0x80 | (13 << 3),
            7,
            // long form (kind 14), delta +100 = svarint 200 = 0b11_001000 → 0x48, 0x03
            0x80 | (14 << 3),
            0x48,
            0x03,
            0,
            1,
            1,
        ];
        let lines: Vec<Option<u32>> = (0..9).map(|u| line_for(&table, 10, u)).collect();
        assert_eq!(
            lines,
            [
                Some(10),
                Some(10),
                Some(12),
                None,
                None,
                None,
                Some(9),
                Some(109),
                None
            ]
        );
    }

    /// Check that damaged tables give no line instead of a panic or a wrong one.
    #[test]
    fn damaged() {
        assert_eq!(line_for(&[], 1, 0), None);
        assert_eq!(line_for(&[0x01], 1, 0), None);
        assert_eq!(line_for(&[0x80 | (14 << 3), 0x7f], 1, 0), None);
        assert_eq!(
            line_for(
                &[
                    0x80 | (13 << 3),
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f,
                    0x7f
                ],
                1,
                0
            ),
            None
        );
    }
}
