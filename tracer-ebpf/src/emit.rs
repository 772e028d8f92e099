//! Writing records and counting what is not written.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{counter::Counter, event::EventHeader};

use crate::maps::{COUNTERS, EVENTS, HITS, wakeup_bytes};

pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot of a live map; programs on this CPU do not run concurrently.
        unsafe { *slot += 1 };
    }
}

pub fn hit(probe: u32) {
    if let Some(slot) = HITS.get_ptr_mut(probe) {
        // SAFETY: as in `bump`.
        unsafe { *slot += 1 };
    }
}

/// Wake the reader only when a batch is waiting: one wake-up per event would cost more than the
/// probe itself. Below the threshold the reader drains on its timer.
fn submit_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA.into()) >= wakeup_bytes() {
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
    entry.submit(submit_flags());
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
