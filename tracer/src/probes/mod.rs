//! Which functions to probe in a file, with which eBPF program, and where.
//!
//! ```no_run
//! let image = alloctrace::elf::ElfImage::open("/lib/x86_64-linux-gnu/libc.so.6".as_ref()).unwrap();
//! for probe in alloctrace::probes::plan(&image) {
//!     println!("{} at {}", probe.func, probe.placement.describe());
//! }
//! ```

pub mod native;
pub mod placement;

use std::{collections::BTreeMap, path::PathBuf};

use iced_x86::Register;

use crate::elf::ElfImage;
use placement::{Needs, PROLOGUE_BYTES, Placement, place_probe};

/// The eBPF program that serves a probe, which fixes what it reads from the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    /// `malloc(size)`, `valloc`, `pvalloc`, `operator new(size, ...)`.
    SizeArg0,
    /// `calloc(nmemb, size)`.
    Calloc,
    /// `realloc(ptr, size)`.
    Realloc,
    /// `reallocarray(ptr, nmemb, size)`.
    Reallocarray,
    /// `aligned_alloc(alignment, size)`, `memalign`.
    AlignArg0SizeArg1,
    /// `operator new(size, std::align_val_t, ...)`.
    SizeArg0AlignArg1,
    /// `posix_memalign(memptr, alignment, size)`.
    PosixMemalign,
    /// `free(ptr)`.
    Free,
    /// `operator delete(ptr, ...)`.
    Delete,
}

const SYSV_ARGS: [Register; 6] = [
    Register::RDI,
    Register::RSI,
    Register::RDX,
    Register::RCX,
    Register::R8,
    Register::R9,
];

impl Handler {
    /// Name of the eBPF program (in `tracer-ebpf`) for the entry probe.
    pub fn program(self) -> &'static str {
        match self {
            Handler::SizeArg0 => "size_arg0",
            Handler::Calloc => "calloc",
            Handler::Realloc => "realloc",
            Handler::Reallocarray => "reallocarray",
            Handler::AlignArg0SizeArg1 => "align_arg0_size_arg1",
            Handler::SizeArg0AlignArg1 => "size_arg0_align_arg1",
            Handler::PosixMemalign => "posix_memalign",
            Handler::Free => "free",
            Handler::Delete => "delete",
        }
    }

    /// Whether the function also needs a return probe (for the address it returns).
    pub fn has_return(self) -> bool {
        !matches!(self, Handler::Free | Handler::Delete)
    }

    /// Argument registers the entry program reads.
    pub fn arg_registers(self) -> &'static [Register] {
        let n = match self {
            Handler::SizeArg0 | Handler::Free | Handler::Delete => 1,
            Handler::Calloc
            | Handler::Realloc
            | Handler::AlignArg0SizeArg1
            | Handler::SizeArg0AlignArg1 => 2,
            Handler::Reallocarray | Handler::PosixMemalign => 3,
        };
        &SYSV_ARGS[..n]
    }
}

/// Name of the shared return program.
pub const RETURN_PROGRAM: &str = "alloc_return";

/// One allocator entry point to look for.
#[derive(Clone, Copy, Debug)]
pub struct AllocatorFn {
    /// ELF symbol name.
    pub symbol: &'static str,
    /// The trace's `func` value.
    pub func: &'static str,
    pub handler: Handler,
    /// The trace's `runtime` value.
    pub runtime: &'static str,
}

/// A probe to attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub module: PathBuf,
    pub build_id: Option<String>,
    pub func: String,
    pub symbol: String,
    /// Other known names at the same address.
    pub aliases: Vec<String>,
    pub runtime: &'static str,
    pub handler: Handler,
    /// The symbol's virtual address in the file.
    pub address: u64,
    pub placement: Placement,
    /// File offset of the probed instruction.
    pub file_offset: u64,
}

/// Plans one probe per distinct address for every known allocator function defined in `image`.
pub fn plan(image: &ElfImage) -> Vec<ProbeSpec> {
    plan_functions(image, native::NATIVE_FUNCTIONS)
}

/// Plans probes for `functions` found in `image`, one per address (the first entry that resolves
/// to an address names it; later ones become aliases).
pub fn plan_functions(image: &ElfImage, functions: &[AllocatorFn]) -> Vec<ProbeSpec> {
    let symbols = image.function_symbols();
    let mut by_address: BTreeMap<u64, ProbeSpec> = BTreeMap::new();
    let mut order = Vec::new();
    for wanted in functions {
        let Ok(first) = symbols
            .binary_search_by(|s| s.name.as_str().cmp(wanted.symbol))
            .map_err(|_| ())
        else {
            continue;
        };
        // A name may be defined at several addresses (versioned symbols); probe each.
        for sym in symbols[..=first]
            .iter()
            .rev()
            .take_while(|s| s.name == wanted.symbol)
            .chain(
                symbols[first + 1..]
                    .iter()
                    .take_while(|s| s.name == wanted.symbol),
            )
        {
            if let Some(existing) = by_address.get_mut(&sym.address) {
                if existing.symbol != sym.name && !existing.aliases.contains(&sym.name) {
                    existing.aliases.push(sym.name.clone());
                }
                continue;
            }
            let Some(spec) = spec_for(image, wanted, sym.address, sym.size) else {
                continue;
            };
            order.push(sym.address);
            by_address.insert(sym.address, spec);
        }
    }
    order
        .into_iter()
        .filter_map(|a| by_address.remove(&a))
        .collect()
}

fn spec_for(image: &ElfImage, wanted: &AllocatorFn, address: u64, size: u64) -> Option<ProbeSpec> {
    let len = if size > 0 { size } else { PROLOGUE_BYTES };
    let code = image.bytes_at(address, len)?;
    let needs = Needs {
        registers: wanted.handler.arg_registers(),
        return_address: wanted.handler.has_return(),
    };
    let placement = place_probe(code, address, needs);
    let file_offset = image.file_offset(address + placement.offset)?;
    Some(ProbeSpec {
        module: image.path().to_owned(),
        build_id: image.build_id().map(str::to_owned),
        func: wanted.func.to_owned(),
        symbol: wanted.symbol.to_owned(),
        aliases: Vec::new(),
        runtime: wanted.runtime,
        handler: wanted.handler,
        address,
        placement,
        file_offset,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Check that glibc 2.36's allocator functions are planned once per address, that the
    /// aliases are folded, and that the hot paths get emulated probe spots.
    #[test]
    fn glibc_plan() {
        let image = ElfImage::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
        let plan = plan(&image);
        let by_func: BTreeMap<&str, &ProbeSpec> =
            plan.iter().map(|p| (p.func.as_str(), p)).collect();
        for func in [
            "malloc",
            "calloc",
            "realloc",
            "free",
            "posix_memalign",
            "aligned_alloc",
            "valloc",
            "pvalloc",
            "reallocarray",
        ] {
            assert!(by_func.contains_key(func), "{func} missing from {plan:#?}");
        }
        let mut addresses: Vec<u64> = plan.iter().map(|p| p.address).collect();
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), plan.len(), "one probe per address");
        assert!(by_func["free"].placement.emulated && by_func["free"].placement.offset > 0);
        assert!(by_func["malloc"].placement.emulated);
        if by_func["aligned_alloc"].address
            == image
                .function_symbols()
                .iter()
                .find(|s| s.name == "memalign")
                .unwrap()
                .address
        {
            assert!(!by_func.contains_key("memalign"));
            assert!(
                by_func["aligned_alloc"]
                    .aliases
                    .contains(&"memalign".to_string())
            );
        }
    }

    /// Check libstdc++: every operator new/delete variant is found and gets an emulated spot
    /// past `endbr64`.
    #[test]
    fn libstdcxx_plan() {
        let image = ElfImage::open(Path::new("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")).unwrap();
        let plan = plan(&image);
        assert_eq!(
            plan.iter()
                .filter(|p| p.func.starts_with("operator new"))
                .count(),
            8
        );
        assert_eq!(
            plan.iter()
                .filter(|p| p.func.starts_with("operator delete"))
                .count(),
            12
        );
        for p in &plan {
            eprintln!("{:60} {}", p.func, p.placement.describe());
        }
        // The forms programs call on every allocation must be cheap; the nothrow and aligned
        // forms may fall back (their prologues move rsp before any emulated instruction).
        let hot = [
            "operator new(unsigned long)",
            "operator new[](unsigned long)",
            "operator delete(void*)",
            "operator delete(void*, unsigned long)",
            "operator delete[](void*)",
            "operator delete[](void*, unsigned long)",
        ];
        for p in plan.iter().filter(|p| hot.contains(&p.func.as_str())) {
            assert!(
                p.placement.emulated,
                "{} {}",
                p.func,
                p.placement.describe()
            );
        }
    }
}
