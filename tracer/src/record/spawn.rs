//! Starting the target so that no code of its own runs untraced.
//!
//! The child asks to be traced (`PTRACE_TRACEME`) and stops at `exec`. The tracer attaches the
//! probes for what is mapped then (the executable and the dynamic loader), puts a breakpoint on
//! the program's entry point, and lets the loader run syscall by syscall: after each file
//! `mmap` it attaches probes to the newly mapped libraries, before the loader runs their
//! constructors. At the entry point it removes the breakpoint and detaches, and the program
//! runs at full speed with every allocator already probed.

use std::{
    env,
    ffi::OsString,
    fs, io,
    os::unix::fs::PermissionsExt as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use nix::{
    sys::{
        ptrace,
        signal::Signal,
        wait::{WaitStatus, waitpid},
    },
    unistd::Pid,
};

use crate::{elf, sys};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("command not found: {}", program.to_string_lossy())]
    NotFound { program: OsString },
    #[error("{} is not executable", path.display())]
    NotExecutable { path: PathBuf },
    #[error("{} is not an ELF executable (nor a script starting with #!)", path.display())]
    NotElf { path: PathBuf },
    #[error("cannot start {}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ptrace {what} of process {pid} failed")]
    Ptrace {
        what: &'static str,
        pid: u32,
        #[source]
        source: nix::Error,
    },
}

/// The resolved command: the file `execvp` will run.
#[derive(Clone, Debug)]
pub struct Program {
    pub path: PathBuf,
    /// For `#!` scripts, the interpreter the kernel will run.
    pub interpreter: Option<PathBuf>,
}

/// Looks `program` up like `execvp` does (PATH unless it contains a slash) and checks that the
/// kernel can run it: an ELF file, or a `#!` script whose interpreter is one.
pub fn resolve(program: &OsString) -> Result<Program, SpawnError> {
    let name = Path::new(program);
    let candidates: Vec<PathBuf> =
        if name.components().count() > 1 || program.to_string_lossy().contains('/') {
            vec![name.to_owned()]
        } else {
            env::split_paths(&env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(name))
                .collect()
        };
    let path = candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| SpawnError::NotFound {
            program: program.clone(),
        })?;
    let executable = fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        return Err(SpawnError::NotExecutable { path });
    }
    if elf::is_elf(&path).unwrap_or(false) {
        return Ok(Program {
            path,
            interpreter: None,
        });
    }
    let head = fs::read(&path)
        .map(|b| b.into_iter().take(256).collect::<Vec<u8>>())
        .unwrap_or_default();
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = String::from_utf8_lossy(line);
        let interp = line
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        if !interp.is_empty() && elf::is_elf(Path::new(interp)).unwrap_or(false) {
            return Ok(Program {
                path,
                interpreter: Some(PathBuf::from(interp)),
            });
        }
    }
    Err(SpawnError::NotElf { path })
}

/// A child stopped at its exec.
pub struct Stopped {
    pub pid: u32,
}

/// Starts `program args`, stopped right after exec, optionally as another user (`sudo` callers
/// get their own uid/gid back, so the target never runs as root by accident).
pub fn spawn_stopped(
    program: &Program,
    arg0: &OsString,
    args: &[OsString],
    run_as: Option<(u32, u32)>,
) -> Result<Stopped, SpawnError> {
    let mut cmd = Command::new(&program.path);
    cmd.arg0(arg0).args(args);
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    sys::stop_at_exec(&mut cmd);
    let child = cmd.spawn().map_err(|source| SpawnError::Spawn {
        path: program.path.clone(),
        source,
    })?;
    let pid = child.id();
    // `Child` is not waited on through std: the tracer reaps it with waitpid/pidfd.
    drop(child);
    match waitpid(Pid::from_raw(pid as i32), None) {
        Ok(WaitStatus::Stopped(_, Signal::SIGTRAP)) => {}
        Ok(_) | Err(_) => {
            return Err(SpawnError::Spawn {
                path: program.path.clone(),
                source: io::Error::other("the process did not stop at exec"),
            });
        }
    }
    let opts = ptrace::Options::PTRACE_O_TRACESYSGOOD | ptrace::Options::PTRACE_O_EXITKILL;
    ptrace::setoptions(Pid::from_raw(pid as i32), opts).map_err(|source| SpawnError::Ptrace {
        what: "setoptions",
        pid,
        source,
    })?;
    Ok(Stopped { pid })
}

/// Where the loader phase is, for the caller's callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoaderStep {
    /// A file was mapped (and once at the start): attach what is new.
    Mapped,
    /// The program is at its entry point, about to run on its own.
    Entry,
}

/// How the loader phase ended.
#[derive(Debug, PartialEq, Eq)]
pub enum LoaderOutcome {
    /// The program reached its entry point and runs untraced by ptrace.
    Released,
    /// The program ended before reaching its entry point (a missing library, say).
    Exited(WaitStatus),
}

const AT_ENTRY: u64 = 9;

fn entry_point(pid: u32) -> io::Result<u64> {
    let auxv = fs::read(format!("/proc/{pid}/auxv"))?;
    auxv.chunks_exact(16)
        .find_map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
            let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
            (key == AT_ENTRY).then_some(value)
        })
        .ok_or_else(|| io::Error::other("no AT_ENTRY in auxv"))
}

/// Runs the dynamic loader of a stopped child, calling `on_step` after every file `mmap` (and
/// once at the start), and at the program's entry point before it detaches.
pub fn run_loader<E>(
    stopped: &Stopped,
    mut on_step: impl FnMut(LoaderStep) -> Result<(), E>,
) -> Result<Result<LoaderOutcome, SpawnError>, E> {
    let pid = stopped.pid;
    let ptrace_err = |what, source| SpawnError::Ptrace { what, pid, source };
    let npid = Pid::from_raw(pid as i32);
    on_step(LoaderStep::Mapped)?;
    let entry = match entry_point(pid) {
        Ok(entry) => entry,
        Err(source) => {
            return Ok(Err(SpawnError::Spawn {
                path: PathBuf::from(format!("/proc/{pid}/auxv")),
                source,
            }));
        }
    };
    let addr = entry as ptrace::AddressType;
    let original = match ptrace::read(npid, addr) {
        Ok(word) => word,
        Err(e) => return Ok(Err(ptrace_err("read", e))),
    };
    if let Err(e) = ptrace::write(npid, addr, (original & !0xff) | 0xcc) {
        return Ok(Err(ptrace_err("write", e)));
    }
    let mut pending_mmap_fd: Option<i64> = None;
    let mut deliver: Option<Signal> = None;
    loop {
        if let Err(e) = ptrace::syscall(npid, deliver.take()) {
            return Ok(Err(ptrace_err("syscall", e)));
        }
        let status = match waitpid(npid, None) {
            Ok(status) => status,
            Err(e) => return Ok(Err(ptrace_err("wait", e))),
        };
        match status {
            WaitStatus::PtraceSyscall(_) => {
                // At a syscall-entry stop x86-64 has rax = -ENOSYS; at the exit stop, the result.
                let Ok(regs) = ptrace::getregs(npid) else {
                    continue;
                };
                if regs.orig_rax != libc::SYS_mmap as u64 {
                    continue;
                }
                if regs.rax == (-libc::ENOSYS) as u64 {
                    pending_mmap_fd = Some(regs.r8 as i32 as i64);
                } else if pending_mmap_fd.take().is_some_and(|fd| fd >= 0) {
                    on_step(LoaderStep::Mapped)?;
                }
            }
            WaitStatus::Stopped(_, Signal::SIGTRAP) => {
                let Ok(mut regs) = ptrace::getregs(npid) else {
                    continue;
                };
                if regs.rip != entry + 1 {
                    continue;
                }
                if let Err(e) = ptrace::write(npid, addr, original) {
                    return Ok(Err(ptrace_err("write", e)));
                }
                regs.rip = entry;
                if let Err(e) = ptrace::setregs(npid, regs) {
                    return Ok(Err(ptrace_err("setregs", e)));
                }
                on_step(LoaderStep::Entry)?;
                if let Err(e) = ptrace::detach(npid, None) {
                    return Ok(Err(ptrace_err("detach", e)));
                }
                return Ok(Ok(LoaderOutcome::Released));
            }
            WaitStatus::Stopped(_, sig) => deliver = Some(sig),
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                return Ok(Ok(LoaderOutcome::Exited(status)));
            }
            _ => {}
        }
    }
}
