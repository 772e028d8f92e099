//! Estimates of what an allocator really hands out for a request: the size class (bytes the
//! block occupies) and the usable size. They drive internal fragmentation and the extents used
//! for address-space occupancy. Definitions and sources are in `docs/metrics.md`.
//!
//! ```no_run
//! use analysis::sizeclass::{Allocator, estimate};
//! let class = estimate(Allocator::Glibc, 100);
//! assert_eq!((class.class_bytes, class.usable), (112, 104));
//! ```

use serde::Serialize;

/// Which allocator's rounding rules apply to a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocator {
    /// glibc ptmalloc on x86-64 (malloc, calloc, operator new, realloc, large pymalloc requests).
    Glibc,
    /// CPython's pymalloc (obj and mem domains, requests of 1..=512 bytes).
    Pymalloc,
    /// The Go runtime's size classes (`runtime/sizeclasses.go`, Go 1.19).
    Go,
}

/// The estimate for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Bytes the block takes in its heap, headers included (glibc chunk size, pymalloc class,
    /// Go size class or page-rounded large object).
    pub class_bytes: u64,
    /// Bytes the program may use (`malloc_usable_size`); `usable − requested` is internal waste.
    pub usable: u64,
    /// glibc served it with its own mmap (chunk at or above the mmap threshold).
    pub mmapped: bool,
}

/// glibc's `SIZE_SZ` on 64-bit targets.
const GLIBC_SIZE_SZ: u64 = 8;
/// `MALLOC_ALIGN_MASK` (16-byte alignment on x86-64).
const GLIBC_ALIGN_MASK: u64 = 15;
/// `MINSIZE`: the smallest chunk.
const GLIBC_MIN_CHUNK: u64 = 32;
/// `DEFAULT_MMAP_THRESHOLD_MIN`: glibc starts with this threshold; it can rise dynamically
/// (up to 32 MiB) after mmapped chunks are freed, which the trace does not show.
pub const GLIBC_MMAP_THRESHOLD: u64 = 128 * 1024;
const PAGE: u64 = 4096;

/// pymalloc's `ALIGNMENT` (16 since CPython 3.8) and `SMALL_REQUEST_THRESHOLD`.
const PYMALLOC_ALIGN: u64 = 16;
pub const PYMALLOC_MAX: u64 = 512;

/// Go's `_MaxSmallSize` and `_PageShift` (8 KiB pages).
const GO_MAX_SMALL: u64 = 32768;
const GO_PAGE: u64 = 8192;
/// `class_to_size` from Go 1.19's `runtime/sizeclasses.go` (class 0 = no class).
const GO_CLASS_TO_SIZE: [u16; 68] = [
    0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320,
    352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
    2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728,
    10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672,
    32768,
];

#[inline]
fn round_up(value: u64, to: u64) -> u64 {
    value.saturating_add(to - 1) & !(to - 1)
}

/// glibc `request2size`: chunk = max(MINSIZE, (size + SIZE_SZ + MALLOC_ALIGN_MASK) & ~MALLOC_ALIGN_MASK).
#[inline]
pub fn glibc_chunk(size: u64) -> u64 {
    (size.saturating_add(GLIBC_SIZE_SZ + GLIBC_ALIGN_MASK) & !GLIBC_ALIGN_MASK).max(GLIBC_MIN_CHUNK)
}

/// The estimate for `size` bytes requested from `allocator`.
#[inline]
pub fn estimate(allocator: Allocator, size: u64) -> Class {
    match allocator {
        Allocator::Glibc => {
            let chunk = glibc_chunk(size);
            if chunk >= GLIBC_MMAP_THRESHOLD {
                // sysmalloc maps ALIGN_UP(nb + SIZE_SZ, pagesize); both chunk header words are
                // then overhead (malloc_usable_size = chunksize − CHUNK_HDR_SZ).
                let mapped = round_up(chunk.saturating_add(GLIBC_SIZE_SZ), PAGE);
                Class {
                    class_bytes: mapped,
                    usable: mapped - 2 * GLIBC_SIZE_SZ,
                    mmapped: true,
                }
            } else {
                // The next chunk's prev_size word is usable while this chunk is in use.
                Class {
                    class_bytes: chunk,
                    usable: chunk - GLIBC_SIZE_SZ,
                    mmapped: false,
                }
            }
        }
        Allocator::Pymalloc => {
            let class = round_up(size.max(1), PYMALLOC_ALIGN);
            Class {
                class_bytes: class,
                usable: class,
                mmapped: false,
            }
        }
        Allocator::Go => {
            let class = if size == 0 {
                // Zero-sized allocations all return &runtime.zerobase.
                0
            } else if size <= GO_MAX_SMALL {
                let index = GO_CLASS_TO_SIZE.partition_point(|&c| u64::from(c) < size);
                GO_CLASS_TO_SIZE
                    .get(index)
                    .map_or(GO_MAX_SMALL, |&c| u64::from(c))
            } else {
                round_up(size, GO_PAGE)
            };
            Class {
                class_bytes: class,
                usable: class,
                mmapped: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check the glibc estimate against malloc_usable_size values measured on x86-64 glibc 2.36.
    #[test]
    fn glibc_matches_measured_usable_sizes() {
        // (request, malloc_usable_size) pairs from glibc 2.36 on x86-64.
        for (size, usable) in [
            (0, 24),
            (1, 24),
            (24, 24),
            (25, 40),
            (100, 104),
            (1000, 1000),
            (1001, 1016),
        ] {
            assert_eq!(
                estimate(Allocator::Glibc, size).usable,
                usable,
                "size {size}"
            );
        }
        let big = estimate(Allocator::Glibc, 200_000);
        assert!(big.mmapped);
        assert_eq!(big.class_bytes, 200_704);
        assert_eq!(big.usable, 200_704 - 16);
    }

    /// Check pymalloc's 16-byte classes and Go's table lookups at and between class edges.
    #[test]
    fn pymalloc_and_go_classes() {
        assert_eq!(estimate(Allocator::Pymalloc, 1).class_bytes, 16);
        assert_eq!(estimate(Allocator::Pymalloc, 17).class_bytes, 32);
        assert_eq!(estimate(Allocator::Pymalloc, 512).class_bytes, 512);
        for (size, class) in [
            (1, 8),
            (8, 8),
            (9, 16),
            (17, 24),
            (25, 32),
            (33, 48),
            (1025, 1152),
            (32768, 32768),
            (32769, 40960),
        ] {
            assert_eq!(
                estimate(Allocator::Go, size).class_bytes,
                class,
                "size {size}"
            );
        }
        assert_eq!(estimate(Allocator::Go, 0).class_bytes, 0);
    }
}
