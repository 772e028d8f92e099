//! Facts about processes that the kernel gives away in `/proc` and through syscalls: privileges,
//! whether a process is gone, where its brk heap starts, the clocks, the tracer's own usage.

use std::fs;

use nix::{
    sys::wait::WaitStatus,
    time::{ClockId, clock_gettime},
};
use trace_format::run::Usage;

use super::TargetExit;

/// Root, or CAP_BPF + CAP_PERFMON in the effective set.
pub fn is_privileged() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_PERFMON: u64 = 38;
    const CAP_BPF: u64 = 39;
    cap_eff & (1 << CAP_BPF) != 0 && cap_eff & (1 << CAP_PERFMON) != 0
}

pub(super) fn now(clock: ClockId) -> u64 {
    clock_gettime(clock)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Whether the process is a zombie (exited, not yet reaped) or dead.
pub(super) fn has_exited(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

/// `start_brk` (field 47 of /proc/PID/stat): where the brk heap starts.
pub(super) fn start_brk(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    after_comm
        .split_whitespace()
        .nth(47 - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The tracer's own CPU time and peak RSS so far.
pub(super) fn own_usage() -> Option<Usage> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    Some(usage_of(usage.as_ref()))
}

/// Reaps the started command `pid`: how it ended and, if it did, what it used.
pub(super) fn reap(pid: u32) -> (TargetExit, Option<Usage>) {
    match crate::sys::wait4(pid) {
        Ok((status, usage)) => {
            let exit = wait_status_exit(status);
            (
                exit,
                (exit != TargetExit::Running).then(|| usage_of(&usage)),
            )
        }
        Err(_) => (TargetExit::Running, None),
    }
}

fn usage_of(usage: &libc::rusage) -> Usage {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_user_s: secs(usage.ru_utime),
        cpu_system_s: secs(usage.ru_stime),
        // Kilobytes on Linux.
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
}

pub(super) fn wait_status_exit(status: WaitStatus) -> TargetExit {
    match status {
        WaitStatus::Exited(_, code) => TargetExit::Code(code),
        WaitStatus::Signaled(_, sig, _) => TargetExit::Signal(sig as i32),
        _ => TargetExit::Running,
    }
}
