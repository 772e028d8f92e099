//! alloctrace's kernel side: uprobes on allocator entry points and tracepoints on the
//! address-space syscalls, all writing `tracer_common` records into one ring buffer.
//!
//! Programs never panic and never loop unboundedly; every early exit bumps a counter
//! (`tracer_common::counter::Counter`), so user space can account for every call it did not
//! receive as a row.
#![no_std]
#![no_main]

mod alloc;
mod emit;
mod golang;
mod maps;
mod mem;
mod python;
mod regs;
mod runtime;
mod stack;
mod tree;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects code that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
