//! alloctrace's library: everything `alloctrace` does except parsing its command line.
//!
//! ```no_run
//! let image = alloctrace::elf::ElfImage::open("/lib/x86_64-linux-gnu/libc.so.6".as_ref()).unwrap();
//! println!("{} allocator probes", alloctrace::probes::plan(&image).len());
//! ```

pub mod ebpf;
pub mod elf;
pub mod golang;
pub mod probes;
pub mod procmaps;
pub mod python;
pub mod record;
pub mod sys;
