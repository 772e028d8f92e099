//! Go allocations: the calls in progress, and where a result probe reads the result.
//!
//! A Go allocator's result is read either on its RET instructions (RAX) or, where the code
//! allows, at an earlier instruction the kernel emulates, from a register or a frame slot (see
//! `tracer/src/golang/results.rs`). The place travels in the BPF cookie of each result probe,
//! above the probe id in the low 32 bits.

/// Key of `GO_CALLS`: one allocation call in progress per goroutine.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoKey {
    pub tgid: u64,
    /// The goroutine's `g` pointer (register R14 in Go's internal ABI).
    pub g: u64,
}

/// A goroutine's Go allocation call in progress; `depth` 0 when it has none (the entry is kept
/// between calls, to be updated in place).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoCall {
    /// Probed allocator calls nested on the goroutine's stack (0: idle).
    pub depth: u32,
    pub probe: u32,
    pub size: u64,
    pub type_ptr: u64,
    /// Key of the call's stack in `STACKS`, 0 for none.
    pub stack: u64,
    /// The goroutine's stack as last read from its `g`, kept between calls.
    pub bounds: GoStackBounds,
}

/// A goroutine's stack, `g.stack` (`lo`, `hi`: the first two words of every Go version's `g`):
/// its frame records lie below `hi`, so the stack walk copies no further. Read from the `g` at
/// a goroutine's first allocation with stacks and again whenever RSP is outside them (the stack
/// grew and was copied elsewhere); all zero when not read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoStackBounds {
    pub lo: u64,
    pub hi: u64,
}

impl GoStackBounds {
    /// Whether `addr` lies on this stack.
    #[inline(always)]
    pub fn holds(&self, addr: u64) -> bool {
        self.lo <= addr && addr < self.hi
    }
}

const _: () = assert!(core::mem::size_of::<GoKey>() == 16);
const _: () = assert!(core::mem::size_of::<GoCall>() == 48);

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, integers only, no padding.
unsafe impl aya::Pod for GoKey {}
#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, integers only, no padding.
unsafe impl aya::Pod for GoCall {}

/// Bits 32..40 of a result probe's cookie: the register (`probe::loc`) holding the result, or
/// the base of the slot it is in.
const REGISTER_SHIFT: u32 = 32;
/// Bit 40: the result is the 8 bytes at register + offset, not the register.
const DEREF: u64 = 1 << 40;
/// Bits 41..63: that offset.
const OFFSET_SHIFT: u32 = 41;
const OFFSET_MASK: u64 = (1 << 22) - 1;
/// Bit 63: the probe is in a helper that finishes an allocation a leaf began (a slow path).
const HELPER: u64 = 1 << 63;

/// The largest frame-slot offset a cookie can carry.
pub const MAX_RESULT_OFFSET: u32 = OFFSET_MASK as u32;

/// The cookie of a result probe of probe `probe`: the result is in `register`, or at
/// `[register + offset]` when `offset` is set (at most [`MAX_RESULT_OFFSET`]).
pub const fn result_cookie(probe: u32, register: u8, offset: Option<u32>, helper: bool) -> u64 {
    let mut cookie = probe as u64 | (register as u64) << REGISTER_SHIFT;
    if let Some(offset) = offset {
        cookie |= DEREF | ((offset as u64) & OFFSET_MASK) << OFFSET_SHIFT;
    }
    if helper {
        cookie |= HELPER;
    }
    cookie
}

/// The register of a result cookie.
pub const fn result_register(cookie: u64) -> u8 {
    (cookie >> REGISTER_SHIFT) as u8
}

/// The slot offset of a result cookie, `None` when the result is the register itself.
pub const fn result_offset(cookie: u64) -> Option<u32> {
    if cookie & DEREF == 0 {
        None
    } else {
        Some(((cookie >> OFFSET_SHIFT) & OFFSET_MASK) as u32)
    }
}

/// Whether the result probe is in a slow-path helper.
pub const fn result_in_helper(cookie: u64) -> bool {
    cookie & HELPER != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a cookie round-trips its register, offset and helper bit, and keeps the probe
    /// id in its low 32 bits.
    #[test]
    fn cookie_round_trip() {
        let c = result_cookie(4095, crate::probe::loc::RSP, Some(0x50), true);
        assert_eq!(c as u32, 4095);
        assert_eq!(result_register(c), crate::probe::loc::RSP);
        assert_eq!(result_offset(c), Some(0x50));
        assert!(result_in_helper(c));
        let c = result_cookie(17, crate::probe::loc::RAX, None, false);
        assert_eq!(
            (result_register(c), result_offset(c)),
            (crate::probe::loc::RAX, None)
        );
        assert!(!result_in_helper(c));
        let c = result_cookie(17, crate::probe::loc::RSP, Some(MAX_RESULT_OFFSET), false);
        assert_eq!(result_offset(c), Some(MAX_RESULT_OFFSET));
    }
}
