//! The native allocator entry points: glibc's malloc family, libstdc++'s operator new and
//! delete, and the allocators programs link instead of glibc's (mimalloc, jemalloc as Rust's
//! tikv-jemallocator builds it), with the eBPF program that handles each.

use trace_format::names::Runtime;

use super::{AllocatorFn, Handler};

const fn f(symbol: &'static str, func: &'static str, handler: Handler) -> AllocatorFn {
    AllocatorFn {
        symbol,
        func,
        handler,
        runtime: Runtime::Native,
    }
}

/// In priority order: when several entries resolve to one address (glibc 2.36 has
/// `aligned_alloc` = `memalign` = `__libc_memalign`, `free` = `cfree` = `__libc_free`), the first
/// names the rows and the others are recorded as aliases of the one probe.
pub const NATIVE_FUNCTIONS: &[AllocatorFn] = &[
    f("malloc", "malloc", Handler::SizeArg0),
    f("calloc", "calloc", Handler::Calloc),
    f("realloc", "realloc", Handler::Realloc),
    f("reallocarray", "reallocarray", Handler::Reallocarray),
    f("free", "free", Handler::Free),
    f("posix_memalign", "posix_memalign", Handler::PosixMemalign),
    f("aligned_alloc", "aligned_alloc", Handler::AlignArg0SizeArg1),
    f("memalign", "memalign", Handler::AlignArg0SizeArg1),
    f("valloc", "valloc", Handler::SizeArg0),
    f("pvalloc", "pvalloc", Handler::SizeArg0),
    f("cfree", "free", Handler::Free),
    // glibc's internal names of the same functions (aliases in a shared libc; in some static
    // binaries the only names left).
    f("__libc_malloc", "malloc", Handler::SizeArg0),
    f("__libc_calloc", "calloc", Handler::Calloc),
    f("__libc_realloc", "realloc", Handler::Realloc),
    f("__libc_reallocarray", "reallocarray", Handler::Reallocarray),
    f("__libc_free", "free", Handler::Free),
    f("__libc_memalign", "memalign", Handler::AlignArg0SizeArg1),
    f("__libc_valloc", "valloc", Handler::SizeArg0),
    f("__libc_pvalloc", "pvalloc", Handler::SizeArg0),
    // C++ (Itanium ABI, 64-bit size_t). Rows carry the demangled signature.
    f("_Znwm", "operator new(unsigned long)", Handler::SizeArg0),
    f("_Znam", "operator new[](unsigned long)", Handler::SizeArg0),
    f(
        "_ZnwmRKSt9nothrow_t",
        "operator new(unsigned long, std::nothrow_t const&)",
        Handler::SizeArg0,
    ),
    f(
        "_ZnamRKSt9nothrow_t",
        "operator new[](unsigned long, std::nothrow_t const&)",
        Handler::SizeArg0,
    ),
    f(
        "_ZnwmSt11align_val_t",
        "operator new(unsigned long, std::align_val_t)",
        Handler::SizeArg0AlignArg1,
    ),
    f(
        "_ZnamSt11align_val_t",
        "operator new[](unsigned long, std::align_val_t)",
        Handler::SizeArg0AlignArg1,
    ),
    f(
        "_ZnwmSt11align_val_tRKSt9nothrow_t",
        "operator new(unsigned long, std::align_val_t, std::nothrow_t const&)",
        Handler::SizeArg0AlignArg1,
    ),
    f(
        "_ZnamSt11align_val_tRKSt9nothrow_t",
        "operator new[](unsigned long, std::align_val_t, std::nothrow_t const&)",
        Handler::SizeArg0AlignArg1,
    ),
    f("_ZdlPv", "operator delete(void*)", Handler::Delete),
    f("_ZdaPv", "operator delete[](void*)", Handler::Delete),
    f(
        "_ZdlPvm",
        "operator delete(void*, unsigned long)",
        Handler::Delete,
    ),
    f(
        "_ZdaPvm",
        "operator delete[](void*, unsigned long)",
        Handler::Delete,
    ),
    f(
        "_ZdlPvRKSt9nothrow_t",
        "operator delete(void*, std::nothrow_t const&)",
        Handler::Delete,
    ),
    f(
        "_ZdaPvRKSt9nothrow_t",
        "operator delete[](void*, std::nothrow_t const&)",
        Handler::Delete,
    ),
    f(
        "_ZdlPvSt11align_val_t",
        "operator delete(void*, std::align_val_t)",
        Handler::Delete,
    ),
    f(
        "_ZdaPvSt11align_val_t",
        "operator delete[](void*, std::align_val_t)",
        Handler::Delete,
    ),
    f(
        "_ZdlPvmSt11align_val_t",
        "operator delete(void*, unsigned long, std::align_val_t)",
        Handler::Delete,
    ),
    f(
        "_ZdaPvmSt11align_val_t",
        "operator delete[](void*, unsigned long, std::align_val_t)",
        Handler::Delete,
    ),
    f(
        "_ZdlPvSt11align_val_tRKSt9nothrow_t",
        "operator delete(void*, std::align_val_t, std::nothrow_t const&)",
        Handler::Delete,
    ),
    f(
        "_ZdaPvSt11align_val_tRKSt9nothrow_t",
        "operator delete[](void*, std::align_val_t, std::nothrow_t const&)",
        Handler::Delete,
    ),
    // mimalloc (statically linked, e.g. Rust's `mimalloc` crate, or libmimalloc.so): its own
    // API; a program that uses it never reaches glibc's malloc. Rust's global allocator calls
    // the `_aligned` forms.
    f("mi_malloc", "mi_malloc", Handler::SizeArg0),
    f("mi_zalloc", "mi_zalloc", Handler::SizeArg0),
    f("mi_calloc", "mi_calloc", Handler::Calloc),
    f("mi_realloc", "mi_realloc", Handler::Realloc),
    f("mi_rezalloc", "mi_rezalloc", Handler::Realloc),
    f(
        "mi_malloc_aligned",
        "mi_malloc_aligned",
        Handler::SizeArg0AlignArg1,
    ),
    f(
        "mi_zalloc_aligned",
        "mi_zalloc_aligned",
        Handler::SizeArg0AlignArg1,
    ),
    f(
        "mi_heap_zalloc_aligned",
        "mi_zalloc_aligned",
        Handler::CtxSize,
    ),
    f("mi_realloc_aligned", "mi_realloc_aligned", Handler::Realloc),
    f("mi_free", "mi_free", Handler::Free),
    // jemalloc with the `_rjem_` prefix (Rust's tikv-jemallocator; an unprefixed libjemalloc
    // defines `malloc` and friends, probed above). The `x` forms take flags (alignment, zeroing)
    // after the usual arguments.
    f("_rjem_malloc", "_rjem_malloc", Handler::SizeArg0),
    f("_rjem_calloc", "_rjem_calloc", Handler::Calloc),
    f("_rjem_realloc", "_rjem_realloc", Handler::Realloc),
    f("_rjem_mallocx", "_rjem_mallocx", Handler::SizeArg0),
    f("_rjem_rallocx", "_rjem_rallocx", Handler::Realloc),
    f(
        "_rjem_posix_memalign",
        "_rjem_posix_memalign",
        Handler::PosixMemalign,
    ),
    f(
        "_rjem_aligned_alloc",
        "_rjem_aligned_alloc",
        Handler::AlignArg0SizeArg1,
    ),
    f("_rjem_free", "_rjem_free", Handler::Free),
    f("_rjem_sdallocx", "_rjem_sdallocx", Handler::Free),
    f("_rjem_dallocx", "_rjem_dallocx", Handler::Free),
];
