//! The few system calls std and nix do not wrap safely. All `unsafe` of the user-space side
//! lives here.

use std::{
    io,
    os::fd::{AsFd as _, FromRawFd as _, OwnedFd},
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

/// `wait4(2)`: waits for child `pid` to change state, with the resources it used if it ended
/// (its own and those of the descendants it reaped; zero otherwise). nix wraps `waitpid` only.
pub fn wait4(pid: u32) -> io::Result<(nix::sys::wait::WaitStatus, libc::rusage)> {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes only the two out-parameters, which live for the call.
    let ret = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let status = nix::sys::wait::WaitStatus::from_raw(nix::unistd::Pid::from_raw(ret), status)
        .map_err(io::Error::from)?;
    Ok((status, usage))
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

/// Attaches a loaded uprobe program to a USDT probe guarded by a semaphore: a uprobe perf event
/// with `ref_ctr_offset` (so the kernel increments the semaphore while the probe is attached and
/// the program takes its traced path) linked to the program with a BPF cookie.
///
/// aya 0.14 opens uprobe perf events without `ref_ctr_offset`, hence this raw version.
/// Returns the link; dropping it detaches the probe.
pub fn attach_usdt(
    program: &aya::programs::ProgramFd,
    path: &std::path::Path,
    offset: u64,
    ref_ctr_offset: u64,
    pid: u32,
    cookie: u64,
) -> io::Result<OwnedFd> {
    use std::os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _};
    let pmu: u32 = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?
        .trim()
        .parse()
        .map_err(io::Error::other)?;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1); libc has no binding for it.
    let mut attr = [0u8; 72];
    attr[0..4].copy_from_slice(&pmu.to_ne_bytes());
    attr[4..8].copy_from_slice(&72u32.to_ne_bytes());
    // config bits 32..63: ref_ctr_offset (/sys/bus/event_source/devices/uprobe/format).
    attr[8..16].copy_from_slice(&(ref_ctr_offset << 32).to_ne_bytes());
    attr[56..64].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    attr[64..72].copy_from_slice(&offset.to_ne_bytes());
    // pid 0: every process. A uprobe's BPF program runs from the probe's trace event whatever
    // the perf event's CPU, so one event on CPU 0 serves all (as aya does for its uprobes).
    let (pid, cpu) = match pid {
        0 => (-1i32, 0i32),
        pid => (i32::try_from(pid).map_err(io::Error::other)?, -1i32),
    };
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares and `c_path` outlives
    // the call; the result is checked.
    let perf_fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            pid,
            cpu,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if perf_fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    let perf_fd =
        unsafe { OwnedFd::from_raw_fd(i32::try_from(perf_fd).map_err(io::Error::other)?) };
    // union bpf_attr, BPF_LINK_CREATE: prog_fd, target_fd, attach_type, flags, perf_event.bpf_cookie.
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PERF_EVENT: u32 = 41;
    let mut link_attr = [0u8; 64];
    link_attr[0..4].copy_from_slice(&(program.as_fd().as_raw_fd() as u32).to_ne_bytes());
    link_attr[4..8].copy_from_slice(&(perf_fd.as_raw_fd() as u32).to_ne_bytes());
    link_attr[8..12].copy_from_slice(&BPF_PERF_EVENT.to_ne_bytes());
    link_attr[16..24].copy_from_slice(&cookie.to_ne_bytes());
    // SAFETY: a zero-padded bpf_attr of the size passed; the result is checked.
    let link = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            link_attr.as_ptr(),
            link_attr.len() as u32,
        )
    };
    if link < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else. The link keeps the perf event alive.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(link).map_err(io::Error::other)?) })
}
