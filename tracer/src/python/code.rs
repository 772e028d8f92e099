//! Naming a Python frame: a code object's qualified name, file and the line of an instruction,
//! read from the traced process's memory with the offsets of [`FrameLayout`].
//!
//! Reading is behind [`Memory`] so this stays testable on byte buffers; the tracer reads
//! `/proc/PID/mem`.

use super::{frames::FrameLayout, linetable};

/// Read access to a process's memory.
pub trait Memory {
    /// Fills `buf` from address `addr`; an error when any byte is unreadable.
    fn read(&self, addr: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("cannot read {what} at {addr:#x}")]
    Read {
        what: &'static str,
        addr: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} at {addr:#x} is not a valid object: {why}")]
    Invalid {
        what: &'static str,
        addr: u64,
        why: &'static str,
    },
}

/// Longest name or file name read (a damaged length must not make us read megabytes).
const MAX_STRING_CHARS: u64 = 4096;
/// Longest location table read: one entry per 1–8 code units, a few bytes each; CPython's
/// largest functions have tables of tens of KiB.
const MAX_LINETABLE: u64 = 1 << 20;

/// What a code object says about itself (everything needed to name its frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeInfo {
    /// `co_qualname` (`Class.method`, `outer.<locals>.inner`).
    pub qualname: String,
    pub filename: String,
    pub firstlineno: i32,
    /// `_co_firsttraceable`: instructions before it (`MAKE_CELL`, `COPY_FREE_VARS`, ...) run
    /// while the frame is still being set up.
    pub firsttraceable: u32,
    /// `co_linetable`'s bytes.
    pub linetable: Vec<u8>,
    /// The object pointers read, to tell a code object from another one later allocated at
    /// the same address.
    pub identity: CodeIdentity,
}

/// The pointers and numbers that identify a code object while it lives: a new code object at
/// a reused address has other name, file and table objects (or another first line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeIdentity {
    pub name: u64,
    pub qualname: u64,
    pub filename: u64,
    pub linetable: u64,
    pub firstlineno: i32,
}

impl CodeInfo {
    /// The line of the instruction at byte offset `instr` from the start of the bytecode.
    pub fn line(&self, instr: u32) -> Option<u32> {
        linetable::line_for(&self.linetable, self.firstlineno, instr / 2)
    }

    /// Whether the frame at `instr` is still being set up (CPython's "incomplete" frames,
    /// which tracebacks leave out).
    pub fn is_incomplete(&self, instr: u32) -> bool {
        instr / 2 < self.firsttraceable
    }
}

fn word(bytes: &[u8], offset: u64) -> Option<u64> {
    let start = usize::try_from(offset).ok()?;
    let raw = bytes.get(start..start.checked_add(8)?)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

fn int32(bytes: &[u8], offset: u64) -> Option<i32> {
    let start = usize::try_from(offset).ok()?;
    let raw = bytes.get(start..start.checked_add(4)?)?;
    Some(i32::from_le_bytes(raw.try_into().ok()?))
}

fn read_vec(
    mem: &dyn Memory,
    what: &'static str,
    addr: u64,
    len: u64,
) -> Result<Vec<u8>, CodeError> {
    let invalid = |why| CodeError::Invalid { what, addr, why };
    let len = usize::try_from(len).map_err(|_| invalid("too large"))?;
    let mut buf = vec![0u8; len];
    mem.read(addr, &mut buf)
        .map_err(|source| CodeError::Read { what, addr, source })?;
    Ok(buf)
}

/// The identity fields of the code object at `addr` (one small read).
pub fn identity(
    mem: &dyn Memory,
    layout: &FrameLayout,
    addr: u64,
) -> Result<CodeIdentity, CodeError> {
    let header = read_vec(mem, "code object", addr, layout.code_size)?;
    identity_from(&header, layout, addr)
}

fn identity_from(
    header: &[u8],
    layout: &FrameLayout,
    addr: u64,
) -> Result<CodeIdentity, CodeError> {
    let short = CodeError::Invalid {
        what: "code object",
        addr,
        why: "shorter than PyCodeObject",
    };
    let ptr = |offset| word(header, offset);
    match (
        ptr(layout.code_name),
        ptr(layout.code_qualname),
        ptr(layout.code_filename),
        ptr(layout.code_linetable),
        int32(header, layout.code_firstlineno),
    ) {
        (Some(name), Some(qualname), Some(filename), Some(linetable), Some(firstlineno)) => {
            Ok(CodeIdentity {
                name,
                qualname,
                filename,
                linetable,
                firstlineno,
            })
        }
        _ => Err(short),
    }
}

/// Reads the code object at `addr`: its names, file, first line and location table.
pub fn read_code(mem: &dyn Memory, layout: &FrameLayout, addr: u64) -> Result<CodeInfo, CodeError> {
    let header = read_vec(mem, "code object", addr, layout.code_size)?;
    let identity = identity_from(&header, layout, addr)?;
    let firsttraceable = int32(&header, layout.code_firsttraceable)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    let qualname = if identity.qualname != 0 {
        read_str(mem, layout, identity.qualname)?
    } else {
        read_str(mem, layout, identity.name)?
    };
    Ok(CodeInfo {
        qualname,
        filename: read_str(mem, layout, identity.filename)?,
        firstlineno: identity.firstlineno,
        firsttraceable,
        linetable: read_bytes(mem, layout, identity.linetable)?,
        identity,
    })
}

/// Reads a `bytes` object's contents.
pub fn read_bytes(mem: &dyn Memory, layout: &FrameLayout, addr: u64) -> Result<Vec<u8>, CodeError> {
    let invalid = |why| CodeError::Invalid {
        what: "bytes object",
        addr,
        why,
    };
    let header = read_vec(mem, "bytes object", addr, layout.var_size + 8)?;
    let size = word(&header, layout.var_size).ok_or(invalid("short header"))?;
    if size > MAX_LINETABLE {
        return Err(invalid("implausible length"));
    }
    read_vec(mem, "bytes data", addr + layout.bytes_data, size)
}

/// Reads a `str` object (compact: code names and file names always are).
pub fn read_str(mem: &dyn Memory, layout: &FrameLayout, addr: u64) -> Result<String, CodeError> {
    // The ASCII header size: every string has at least that much, and it holds the state.
    let header = read_vec(mem, "str object", addr, layout.str_ascii_data)?;
    let (data_at, chars, width) = str_shape(&header, layout, addr)?;
    let raw = read_vec(mem, "str data", addr + data_at, chars * width)?;
    Ok(decode_str(&raw, width))
}

/// Where a string's characters are, how many, and their width in bytes, from its header.
pub(crate) fn str_shape(
    header: &[u8],
    layout: &FrameLayout,
    addr: u64,
) -> Result<(u64, u64, u64), CodeError> {
    let invalid = |why| CodeError::Invalid {
        what: "str object",
        addr,
        why,
    };
    let length = word(header, layout.str_length).ok_or(invalid("short header"))?;
    let state = int32(header, layout.str_state).ok_or(invalid("short header"))? as u32;
    let (kind_at, kind_width) = layout.str_kind_bits;
    let kind = (state >> kind_at) & ((1 << kind_width) - 1);
    let compact = (state >> layout.str_compact_bit) & 1 == 1;
    let ascii = (state >> layout.str_ascii_bit) & 1 == 1;
    if !compact {
        return Err(invalid("not a compact string"));
    }
    if length > MAX_STRING_CHARS {
        return Err(invalid("implausible length"));
    }
    // PyUnicode_1BYTE_KIND = 1, 2BYTE = 2, 4BYTE = 4: the kind is the width.
    let width = match kind {
        1 | 2 | 4 => u64::from(kind),
        _ => return Err(invalid("unknown kind")),
    };
    let data_at = if ascii {
        layout.str_ascii_data
    } else {
        layout.str_compact_data
    };
    Ok((data_at, length, width))
}

/// Latin-1, UCS-2 or UCS-4 characters as a `String` (invalid code points become U+FFFD).
pub(crate) fn decode_str(raw: &[u8], width: u64) -> String {
    match width {
        1 => raw.iter().map(|&b| char::from(b)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| {
                char::from_u32(u32::from(u16::from_le_bytes([c[0], c[1]])))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
    }
}
