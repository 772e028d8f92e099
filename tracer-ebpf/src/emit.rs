//! Writing records and counting what is not written.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{counter::Counter, event::EventHeader};

use crate::maps::{COUNTERS, EVENTS, wakeup_bytes};

pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot of a live map; programs on this CPU do not run concurrently.
        unsafe { *slot += 1 };
    }
}

/// Wake the reader only when a batch is waiting: a wake-up (an inter-processor interrupt) per
/// event would cost more than the probe itself. The record that makes the waiting data cross a
/// multiple of the threshold wakes the reader; all others are submitted silently and the reader
/// drains on its timer. Crossing each multiple (not "above the threshold") bounds the wake-ups
/// to a few per ring's worth of data even when the reader is slow to respond.
fn submit_flags(record_bytes: u64) -> u64 {
    let step = wakeup_bytes();
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA.into());
    let before = waiting.saturating_sub(record_bytes);
    if step > 0 && waiting / step != before / step {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

/// Write `record` to the ring; counts a loss if the ring is full.
#[inline(always)]
pub fn emit<T: 'static>(record: T) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        bump(Counter::RingFull);
        return;
    };
    entry.write(record);
    // The ring counts each record with its 8-byte header.
    entry.submit(submit_flags(core::mem::size_of::<T>() as u64 + 8));
}

pub fn header(kind: u32, probe: u32, pid_tgid: u64, flags: u32) -> EventHeader {
    EventHeader {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
        kind,
        probe,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        stack_id: tracer_common::event::NO_STACK,
        flags,
    }
}
