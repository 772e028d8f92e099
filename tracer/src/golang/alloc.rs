//! Which functions see every Go heap allocation exactly once.
//!
//! Up to Go 1.25 every heap allocation goes through `runtime.mallocgc(size uintptr, typ *_type,
//! needzero bool)` (Go 1.19 `src/runtime/malloc.go` line 842; compiled code calls it through
//! `newobject`, `makeslice`, `growslice`, … or directly).
//!
//! From Go 1.26 on (experiment `SizeSpecializedMalloc`, on by default: Go 1.27.3
//! `src/internal/buildcfg/exp.go` line 88) `mallocgc` is only a dispatcher:
//!
//! * the compiler calls the size-class-specialised functions `mallocgcTinySC2`,
//!   `mallocgcSmallNoScanSC<n>` and `mallocgcSmallScanNoHeaderSC<n>` directly for `new(T)` of
//!   at most 80 bytes, bypassing `mallocgc` (`src/cmd/compile/internal/ssagen/ssa.go`
//!   `specializedMallocSym`, lines 137-143 and ~800);
//! * `mallocgc` itself sends sizes below `len(mallocNoScanTable)` (81) to the same functions
//!   through `mallocNoScanTable`/`mallocScanTable` (malloc.go lines 1079-1090,
//!   malloc_tables_generated.go), and larger sizes to `mallocgcSmallNoscan`,
//!   `mallocgcSmallScanNoHeader`, `mallocgcSmallScanHeader` or `mallocgcLarge`
//!   (malloc.go lines 1122-1138; `mallocgcTiny` only without the experiment, lines 1140-1163);
//! * a `…SC<n>` function either allocates itself or, when `debug.malloc` or GC assists are on,
//!   tail-calls `mallocgcTinySlowPath`/`mallocgcSmallNoScanSlowPath`/`mallocgcSmallScanSlowPath`
//!   for that same allocation (malloc_generated.go); `mallocgcSmallNoscanReuse` is a helper of
//!   `mallocgcSmallNoscan` and the SC functions for the same allocation too.
//!
//! So the leaves are every `runtime.mallocgc<Kind>` function (an upper-case letter after
//! `mallocgc`, letters and digits only, so no closures) except the `…SlowPath` and `…Reuse`
//! helpers; they are used when the binary has at least one `…SC<n>` function, and
//! `runtime.mallocgc` alone otherwise (also a Go 1.26+ binary built with
//! `GOEXPERIMENT=nosizespecializedmalloc`, where the SC functions are dead code). Each has
//! `size uintptr, typ *_type` as its first two parameters, so under ABIInternal
//! (`src/cmd/compile/abi-internal.md`: integer registers RAX, RBX, RCX, RDI, RSI, R8-R11) the
//! size is in RAX and the type pointer in RBX. Caveat: with `GOEXPERIMENT=runtimesecret` (off
//! by default) a tiny allocation made in secret mode goes `mallocgcTinySC2` →
//! `mallocgcTinySlowPath` → `mallocgcSmallNoScanSC2` and is seen twice.

use iced_x86::Register;

use super::GoFunc;

const PREFIX: &str = "runtime.mallocgc";
/// Go 1.26+'s dispatcher, and the only allocator before.
pub(super) const DISPATCHER: &str = PREFIX;
/// Helpers that continue an allocation a leaf already saw.
const HELPER_SUFFIXES: &[&str] = &["SlowPath", "Reuse"];

/// An allocator entry point, with where its arguments are at entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatorFunc {
    pub func: GoFunc,
    /// Requested size in bytes (`size uintptr`).
    pub size_reg: Register,
    /// `typ *_type` (may be nil: no pointers, or several objects combined).
    pub type_reg: Option<Register>,
    /// The size class `<n>` of a `…SC<n>` function (its objects are all of that class).
    pub size_class: Option<u32>,
}

/// `<n>` of a name ending in `SC<n>`.
fn size_class(kind: &str) -> Option<u32> {
    let at = kind.rfind("SC")?;
    let digits = &kind[at + 2..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` is an allocator leaf of the Go 1.26+ scheme.
fn is_leaf(name: &str) -> bool {
    let Some(kind) = name.strip_prefix(PREFIX) else {
        return false;
    };
    kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.bytes().all(|b| b.is_ascii_alphanumeric())
        && !HELPER_SUFFIXES.iter().any(|s| kind.ends_with(s))
}

/// The helpers that finish an allocation a leaf started (`runtime.mallocgc<Kind>SlowPath`): a
/// leaf tail-calls them, so their results are the leaf's.
pub(super) fn result_helpers(functions: &[GoFunc]) -> Vec<&GoFunc> {
    functions
        .iter()
        .filter(|f| {
            f.name.strip_prefix(PREFIX).is_some_and(|kind| {
                kind.starts_with(|c: char| c.is_ascii_uppercase())
                    && kind.bytes().all(|b| b.is_ascii_alphanumeric())
                    && kind.ends_with("SlowPath")
            })
        })
        .collect()
}

/// The allocator functions of a binary with these functions (sorted by name).
pub(super) fn allocator_functions(functions: &[GoFunc]) -> Vec<AllocatorFunc> {
    let specialised = functions.iter().any(|f| {
        f.name
            .strip_prefix(PREFIX)
            .is_some_and(|kind| is_leaf(&f.name) && size_class(kind).is_some())
    });
    let chosen: Vec<&GoFunc> = if specialised {
        functions.iter().filter(|f| is_leaf(&f.name)).collect()
    } else {
        functions.iter().filter(|f| f.name == PREFIX).collect()
    };
    chosen
        .into_iter()
        .map(|f| AllocatorFunc {
            func: f.clone(),
            size_reg: Register::RAX,
            type_reg: Some(Register::RBX),
            size_class: f.name.strip_prefix(PREFIX).and_then(size_class),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> GoFunc {
        GoFunc {
            name: name.into(),
            entry: 0x1000,
            end: 0x1100,
        }
    }

    /// Check the leaf rule on Go 1.27's names: SC functions and generic leaves in, dispatcher,
    /// slow paths, reuse helper, closures and look-alikes out.
    #[test]
    fn leaf_rule() {
        let names = [
            "runtime.mallocgc",
            "runtime.mallocgcTinySC2",
            "runtime.mallocgcSmallNoScanSC7",
            "runtime.mallocgcSmallScanNoHeaderSC1",
            "runtime.mallocgcSmallNoscan",
            "runtime.mallocgcLarge",
            "runtime.mallocgcLarge.func1",
            "runtime.mallocgcSmallNoScanSlowPath",
            "runtime.mallocgcSmallNoscanReuse",
            "runtime.mallocgcx",
            "runtime.preMallocgcDebug",
        ];
        let funcs: Vec<GoFunc> = names.iter().map(|n| f(n)).collect();
        let got: Vec<(String, Option<u32>)> = allocator_functions(&funcs)
            .into_iter()
            .map(|a| (a.func.name, a.size_class))
            .collect();
        assert_eq!(
            got,
            vec![
                ("runtime.mallocgcTinySC2".into(), Some(2)),
                ("runtime.mallocgcSmallNoScanSC7".into(), Some(7)),
                ("runtime.mallocgcSmallScanNoHeaderSC1".into(), Some(1)),
                ("runtime.mallocgcSmallNoscan".into(), None),
                ("runtime.mallocgcLarge".into(), None),
            ]
        );
    }

    /// Check that without any SC function (Go ≤ 1.25, or the experiment off) only
    /// `runtime.mallocgc` is used, even when Go 1.24/1.25's generic helpers exist.
    #[test]
    fn mallocgc_without_specialisation() {
        let funcs: Vec<GoFunc> = [
            "runtime.mallocgc",
            "runtime.mallocgcTiny",
            "runtime.mallocgcLarge",
        ]
        .iter()
        .map(|n| f(n))
        .collect();
        let got = allocator_functions(&funcs);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].func.name, "runtime.mallocgc");
        assert_eq!(
            (got[0].size_reg, got[0].type_reg),
            (Register::RAX, Some(Register::RBX))
        );
    }
}
