//! The interpreter's version, read from the binary.

use iced_x86::{Code, OpKind};

use super::{PyError, binary::Binary};

/// A CPython version (`PY_VERSION_HEX` fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PyVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
    /// `a`, `b`, `c` (release candidate) or `f` (final).
    pub release_level: char,
    pub serial: u32,
}

impl PyVersion {
    /// Decodes `PY_VERSION_HEX` (`0xMMmmuuLS`).
    pub fn from_hex(hex: u32) -> Option<PyVersion> {
        let release_level = match (hex >> 4) & 0xf {
            0xa => 'a',
            0xb => 'b',
            0xc => 'c',
            0xf => 'f',
            _ => return None,
        };
        let major = hex >> 24;
        (2..=4).contains(&major).then_some(PyVersion {
            major,
            minor: (hex >> 16) & 0xff,
            micro: (hex >> 8) & 0xff,
            release_level,
            serial: hex & 0xf,
        })
    }

    /// Parses a `PY_VERSION` string: `3.11.7`, `3.12.0rc1`, `3.11.2+`.
    pub fn parse(text: &str) -> Option<PyVersion> {
        let mut parts = text.splitn(3, '.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: u32 = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let micro: u32 = rest.get(..digits)?.parse().ok()?;
        let suffix = rest.get(digits..)?;
        let (release_level, serial) = match suffix.as_bytes().first() {
            None | Some(b'+') => ('f', 0),
            Some(b'a') | Some(b'b') => {
                let level = if suffix.starts_with('a') { 'a' } else { 'b' };
                (level, suffix.get(1..)?.trim_end_matches('+').parse().ok()?)
            }
            Some(b'r') => (
                'c',
                suffix
                    .strip_prefix("rc")?
                    .trim_end_matches('+')
                    .parse()
                    .ok()?,
            ),
            _ => return None,
        };
        (2..=4).contains(&major).then_some(PyVersion {
            major,
            minor,
            micro,
            release_level,
            serial,
        })
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for PyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.release_level {
            'f' => Ok(()),
            'c' => write!(f, "rc{}", self.serial),
            level => write!(f, "{level}{}", self.serial),
        }
    }
}

pub(crate) fn read_version(bin: &Binary) -> Result<PyVersion, PyError> {
    // 3.11+: `const unsigned long Py_Version = PY_VERSION_HEX;`
    if let Some(sym) = bin.object("Py_Version")
        && let Some(bytes) = bin.image.bytes_at(sym.address, 4)
        && let Ok(bytes) = <[u8; 4]>::try_from(bytes)
        && let Some(version) = PyVersion::from_hex(u32::from_le_bytes(bytes))
    {
        return Ok(version);
    }
    // Older: `Py_GetVersion` passes the PY_VERSION literal to PyOS_snprintf; look at the
    // strings its rip-relative operands point to.
    let why = match bin.function("Py_GetVersion") {
        None => "neither Py_Version nor Py_GetVersion is defined".to_owned(),
        Some(func) => {
            let code = bin
                .function_code(func.address, func.size, 256)
                .unwrap_or(&[]);
            for instr in Binary::decode(code, func.address) {
                let rip_relative = (0..instr.op_count())
                    .any(|i| instr.op_kind(i) == OpKind::Memory)
                    && instr.is_ip_rel_memory_operand();
                if !rip_relative || instr.code() != Code::Lea_r64_m {
                    continue;
                }
                if let Some(text) = bin.c_string_at(instr.ip_rel_memory_address())
                    && let Some(version) = PyVersion::parse(text)
                {
                    return Ok(version);
                }
            }
            "Py_GetVersion references no version string".to_owned()
        }
    };
    Err(PyError::Version {
        path: bin.path_buf(),
        why,
    })
}
