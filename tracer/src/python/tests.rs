//! Tests against the interpreters installed on this machine.

use std::path::{Path, PathBuf};

use super::*;

#[test]
fn dump_all() {
    let cases: Vec<(PathBuf, Vec<PathBuf>)> = vec![
        ("/root/.pyenv/versions/3.11.7/bin/python3.11".into(), vec!["/lib/x86_64-linux-gnu/libc.so.6".into(), "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0".into()]),
        ("/usr/bin/python3.11".into(), vec![]),
        ("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0".into(), vec![]),
        ("/root/.pyenv/versions/3.8.18/lib/libpython3.8.so.1.0".into(), vec![]),
        ("/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0".into(), vec![]),
        ("/root/.pyenv/versions/2.7.18/lib/libpython2.7.so.1.0".into(), vec![]),
    ];
    for (exe, libs) in cases {
        let t = std::time::Instant::now();
        let py = PythonRuntime::detect(Path::new(&exe), &libs).unwrap().unwrap();
        eprintln!("==== {} {:?} {:?}", py.interpreter_file().display(), py.full_version(), t.elapsed());
        eprintln!("{:#?}", py.build());
        for p in py.allocator_probes() {
            eprintln!("{:22} {:5} {:?} {:?} {:?} {:?} {} {:?} nests={:?}", p.func, p.domain.as_str(), p.kind, p.layer, p.args.registers(), p.aliases, p.placement.describe(), p.found_by, p.nests);
        }
        eprintln!("probes {:?}", t.elapsed());
        for l in py.limitations() { eprintln!("LIMIT {l}"); }
        eprintln!("limits {:?}", t.elapsed());
        for u in py.usdt_probes() { eprintln!("USDT {}:{} pc={:#x} off={:#x} sem={:?} semoff={:?} {:?}", u.provider, u.name, u.pc, u.file_offset, u.semaphore, u.semaphore_offset, u.args); }
        eprintln!("{:#?}", py.gc_points());
        eprintln!("gc {:?}", t.elapsed());
    }
}
