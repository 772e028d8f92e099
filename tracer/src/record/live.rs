//! Running totals: the live line on a terminal and the summary at the end.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use tracer_common::event::EventKind;

use super::decode::Event;

/// What the trace contains so far, maintained from the events as they are written.
#[derive(Default)]
pub struct Stats {
    pub events: u64,
    pub allocs: u64,
    pub frees: u64,
    pub reallocs: u64,
    pub other: u64,
    pub bytes_allocated: u64,
    /// Blocks allocated during the trace and not freed yet: (pid, address) → size.
    live: FxHashMap<(u32, u64), u64>,
    /// Allocations whose frees no probe sees (Go's: its sweeper frees them), left out of `live`.
    pub collected_allocs: u64,
    pub live_bytes: u64,
    pub peak_live_bytes: u64,
    /// Processes traced so far, and how many of them run now.
    pub processes: usize,
    pub processes_running: usize,
}

/// Whether the frees of an event's allocator are seen, so that its blocks can be followed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frees {
    Seen,
    /// A garbage collector frees the blocks (Go): following them would only grow `live`, by
    /// one entry per allocation (~200 ns of the reader's time each on Go churn), towards a
    /// "peak live" that means nothing.
    Unseen,
}

impl Stats {
    pub fn observe(&mut self, event: &Event, frees: Frees) {
        self.events += 1;
        let Event::Alloc {
            header,
            kind,
            event,
        } = event
        else {
            self.other += 1;
            return;
        };
        let pid = header.pid;
        match kind {
            EventKind::Alloc if frees == Frees::Unseen => {
                self.allocs += 1;
                self.collected_allocs += 1;
                self.bytes_allocated += event.size;
            }
            EventKind::Alloc => {
                self.allocs += 1;
                self.add(pid, event.addr, event.size);
            }
            EventKind::Free => {
                self.frees += 1;
                self.remove(pid, event.addr);
            }
            EventKind::Realloc => {
                self.reallocs += 1;
                let (old, new, size) = (event.arg, event.addr, event.size);
                // glibc: realloc(p, 0) frees p and returns NULL; a failed realloc (NULL with a
                // non-zero size) leaves p allocated.
                if new != 0 || size == 0 {
                    self.remove(pid, old);
                }
                self.add(pid, new, size);
            }
            _ => self.other += 1,
        }
    }

    fn add(&mut self, pid: u32, addr: u64, size: u64) {
        if addr == 0 {
            return;
        }
        self.bytes_allocated += size;
        if let Some(old) = self.live.insert((pid, addr), size) {
            // Allocated twice without a free in between: the free was not seen (it happened
            // before tracing started, or in code we do not probe).
            self.live_bytes -= old;
        }
        self.live_bytes += size;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }

    fn remove(&mut self, pid: u32, addr: u64) {
        if addr == 0 {
            return;
        }
        if let Some(size) = self.live.remove(&(pid, addr)) {
            self.live_bytes -= size;
        }
    }

    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The status line redrawn on a terminal.
pub struct LiveLine {
    started: Instant,
    last_draw: Instant,
    last_events: u64,
    enabled: bool,
}

impl LiveLine {
    pub fn new(enabled: bool) -> LiveLine {
        let now = Instant::now();
        LiveLine {
            started: now,
            last_draw: now,
            last_events: 0,
            enabled,
        }
    }

    pub fn tick(&mut self, stats: &Stats, lost: u64, pid: u32) {
        let who = if stats.processes > 1 {
            format!(
                "{} processes ({} running, top pid {pid})",
                stats.processes, stats.processes_running
            )
        } else {
            format!("pid {pid}")
        };
        let now = Instant::now();
        let since = now - self.last_draw;
        if !self.enabled || since < Duration::from_millis(250) {
            return;
        }
        let rate = (stats.events - self.last_events) as f64 / since.as_secs_f64();
        self.last_draw = now;
        self.last_events = stats.events;
        let elapsed = now - self.started;
        let mut line = String::new();
        let _ = write!(
            line,
            "\r\x1b[2Krecording {who}: {} events, {:.0}/s, live {} in {} blocks, lost {}, {:02}:{:02}",
            thousands(stats.events),
            rate,
            bytes(stats.live_bytes),
            thousands(stats.live_blocks() as u64),
            thousands(lost),
            elapsed.as_secs() / 60,
            elapsed.as_secs() % 60,
        );
        eprint!("{line}");
    }

    /// Clears the line before other output.
    pub fn clear(&mut self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::{alloc::AllocEvent, event::EventHeader};

    use super::*;

    fn ev(kind: EventKind, addr: u64, size: u64, arg: u64) -> Event {
        let header = EventHeader {
            kind: kind as u32,
            pid: 1,
            ..EventHeader::default()
        };
        Event::Alloc {
            header,
            kind,
            event: AllocEvent {
                header,
                addr,
                size,
                arg,
                stack: 0,
            },
        }
    }

    /// Check live and peak bytes across alloc, realloc (move, in place, to zero, failed) and free.
    #[test]
    fn live_bytes() {
        let mut s = Stats::default();
        s.observe(&ev(EventKind::Alloc, 0x10, 100, 0), Frees::Seen);
        s.observe(&ev(EventKind::Realloc, 0x20, 300, 0x10), Frees::Seen);
        assert_eq!(
            (s.live_bytes, s.peak_live_bytes, s.live_blocks()),
            (300, 300, 1)
        );
        s.observe(&ev(EventKind::Realloc, 0, 1000, 0x20), Frees::Seen); // failed: 0x20 stays
        assert_eq!(s.live_bytes, 300);
        s.observe(&ev(EventKind::Realloc, 0, 0, 0x20), Frees::Seen); // realloc(p, 0) frees
        assert_eq!((s.live_bytes, s.live_blocks()), (0, 0));
        s.observe(&ev(EventKind::Alloc, 0x30, 50, 0), Frees::Seen);
        s.observe(&ev(EventKind::Free, 0x30, 0, 0), Frees::Seen);
        s.observe(&ev(EventKind::Free, 0x999, 0, 0), Frees::Seen); // unknown block: ignored
        assert_eq!(
            (
                s.live_bytes,
                s.peak_live_bytes,
                s.allocs,
                s.frees,
                s.reallocs
            ),
            (0, 300, 2, 2, 3)
        );
    }

    /// Go's allocations count, but are not followed as blocks: no probe sees their frees.
    #[test]
    fn collected_allocations_are_not_live() {
        let mut s = Stats::default();
        s.observe(&ev(EventKind::Alloc, 0x10, 100, 0), Frees::Unseen);
        s.observe(&ev(EventKind::Alloc, 0x20, 50, 0), Frees::Seen);
        assert_eq!(
            (s.allocs, s.collected_allocs, s.bytes_allocated),
            (2, 1, 150)
        );
        assert_eq!(
            (s.live_bytes, s.peak_live_bytes, s.live_blocks()),
            (50, 50, 1)
        );
    }

    /// Check the number formatting used in the summary.
    #[test]
    fn formatting() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10), "10 B");
    }
}
