//! The few system calls std and nix do not wrap safely. All `unsafe` of the user-space side
//! lives here.

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
    os::unix::process::CommandExt as _,
    process::Command,
};

/// `pidfd_open(2)`: a descriptor that becomes readable when the process exits.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is checked before use.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: `fd` is a new descriptor returned by the kernel and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the child stop at its `exec` (`PTRACE_TRACEME` before exec), so probes can be attached
/// before it runs any code of its own.
pub fn stop_at_exec(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls ptrace(2), which
    // is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| nix::sys::ptrace::traceme().map_err(io::Error::from));
    }
}

/// Lets the process exit now while a background child releases its descriptors.
///
/// Releasing a uprobe or tracepoint link waits for RCU grace periods in the kernel (~100 ms per
/// link here, serialised), so a trace with dozens of probes would take seconds to exit. A forked
/// child inherits every descriptor, closes its standard streams (so nobody waits on it for
/// EOF), waits until this process is gone, then closes the rest; this process's own closes at
/// exit are then cheap, since the child still holds references.
///
/// Call it only when the process has a single thread, right before exiting.
pub fn release_descriptors_in_background() -> io::Result<()> {
    let (read_end, write_end) = nix::unistd::pipe()?;
    // SAFETY: the process is single-threaded (documented precondition), so the child may run
    // anything; it still restricts itself to raw system calls and `_exit`.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(write_end);
            // SAFETY: raw system calls on descriptor numbers; `_exit` never returns.
            unsafe {
                libc::close(0);
                libc::close(1);
                libc::close(2);
                let mut byte = 0u8;
                // Returns 0 (EOF) when the parent, the last holder of the write end, has exited.
                libc::read(
                    std::os::fd::AsRawFd::as_raw_fd(&read_end),
                    (&raw mut byte).cast(),
                    1,
                );
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                libc::_exit(0)
            }
        }
        _ => {
            drop(read_end);
            // Keep the write end open until this process exits.
            std::mem::forget(write_end);
            Ok(())
        }
    }
}
