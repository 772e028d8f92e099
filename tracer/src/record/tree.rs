//! The traced process tree as user space sees it: one row per process (pid and start time),
//! from the eBPF side's fork, exec and exit records, for `processes.parquet`, the live line
//! and the end of the recording.

use std::fs;

use rustc_hash::FxHashMap;
use trace_format::write::ProcessRow;

/// Every process traced so far.
#[derive(Default)]
pub struct ProcessTable {
    /// Running processes, by pid.
    live: FxHashMap<u32, ProcessRow>,
    /// Ended processes, in the order they ended.
    ended: Vec<ProcessRow>,
}

impl ProcessTable {
    /// A process starts being traced at `start_ns` (made by `ppid`, or found running).
    pub fn start(&mut self, pid: u32, ppid: Option<u32>, start_ns: u64) {
        let (exe, argv) = match ppid.and_then(|p| self.live.get(&p)) {
            // A fork runs its parent's program until it execs.
            Some(parent) => (parent.exe.clone(), parent.argv.clone()),
            None => (exe_of(pid), argv_of(pid)),
        };
        if let Some(old) = self.live.remove(&pid) {
            // Its exit record was lost: the pid was reused, the old process ended before.
            self.ended.push(old);
        }
        self.live.insert(
            pid,
            ProcessRow {
                pid,
                ppid,
                start_ns,
                exe,
                argv,
                runtime: "native".to_owned(),
                ..ProcessRow::default()
            },
        );
    }

    /// `pid` ran exec: its program and command line are read again (it is held, or running
    /// the new image).
    pub fn exec(&mut self, pid: u32, ts_ns: u64) {
        if !self.live.contains_key(&pid) {
            self.start(pid, None, ts_ns);
        }
        if let Some(row) = self.live.get_mut(&pid) {
            row.execs += 1;
            row.exe = exe_of(pid).or(row.exe.take());
            let argv = argv_of(pid);
            if !argv.is_empty() {
                row.argv = argv;
            }
        }
    }

    /// `pid` ended at `end_ns`.
    pub fn exit(&mut self, pid: u32, end_ns: u64, code: Option<i32>, signal: Option<i32>) {
        if let Some(mut row) = self.live.remove(&pid) {
            row.end_ns = Some(end_ns);
            row.exit_code = code;
            row.exit_signal = signal;
            self.ended.push(row);
        }
    }

    /// Counts one row of `events` for `pid`: the live process with that pid, else the last one
    /// that ended (a resident-memory sample read before its exit, or its closing zero sample,
    /// can be written after the exit record).
    pub fn count_event(&mut self, pid: u32) {
        let row = match self.live.get_mut(&pid) {
            Some(row) => Some(row),
            None => self.ended.iter_mut().rev().find(|r| r.pid == pid),
        };
        if let Some(row) = row {
            row.events += 1;
        }
    }

    /// Sets the runtimes a process's files hold.
    pub fn set_runtime(&mut self, pid: u32, runtimes: &[&str]) {
        if let Some(row) = self.live.get_mut(&pid) {
            row.runtime = runtimes.join(",");
        }
    }

    pub fn is_live(&self, pid: u32) -> bool {
        self.live.contains_key(&pid)
    }

    /// Pids of the processes running (as far as the records say).
    pub fn live_pids(&self) -> Vec<u32> {
        self.live.keys().copied().collect()
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Processes traced so far, running or not.
    pub fn total(&self) -> usize {
        self.live.len() + self.ended.len()
    }

    /// Every row, by start time.
    pub fn rows(&self) -> Vec<ProcessRow> {
        let mut rows: Vec<ProcessRow> = self
            .ended
            .iter()
            .chain(self.live.values())
            .cloned()
            .collect();
        rows.sort_by_key(|r| (r.start_ns, r.pid));
        rows
    }
}

fn exe_of(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.display().to_string())
}

fn argv_of(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent of a running process (`/proc/PID/stat` field 4).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The running descendants of `pid` (children first), from `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                && let Some(parent) = parent_of(child)
            {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// When a process already running started, on the monotonic clock: `/proc/PID/stat`'s
/// `starttime` (clock ticks since boot).
pub fn start_time_ns(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    let ticks: u64 = after_comm.split_whitespace().nth(22 - 3)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(ticks * (1_000_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that a reused pid gives two rows, and that a fork inherits its parent's program
    /// until it execs.
    #[test]
    fn reuse_and_fork() {
        let mut t = ProcessTable::default();
        t.start(100, None, 1);
        t.live.get_mut(&100).unwrap().exe = Some("/bin/sh".into());
        t.start(101, Some(100), 2);
        assert_eq!(t.live[&101].exe.as_deref(), Some("/bin/sh"));
        t.count_event(101);
        t.exit(101, 3, Some(0), None);
        t.start(101, Some(100), 4);
        t.count_event(101);
        t.count_event(101);
        t.exit(101, 5, None, Some(9));
        let rows = t.rows();
        assert_eq!(rows.len(), 3);
        let reused: Vec<_> = rows.iter().filter(|r| r.pid == 101).collect();
        assert_eq!(
            reused
                .iter()
                .map(|r| (r.start_ns, r.end_ns, r.events, r.exit_code, r.exit_signal))
                .collect::<Vec<_>>(),
            vec![
                (2, Some(3), 1, Some(0), None),
                (4, Some(5), 2, None, Some(9))
            ]
        );
        assert_eq!((t.live_count(), t.total()), (1, 3));
    }
}
