//! Writing records and counting what is not written.

use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use tracer_common::{counter::Counter, event::EventHeader};

use crate::maps::{COUNTERS, EVENTS, WAKE, wakeup_bytes};

pub fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot of a live map. (Not atomic: the BPF target has no atomic
        // read-modify-write in `core`; two programs interleaving on one CPU, which needs one
        // preempted mid-increment, could undercount by one.)
        unsafe { *slot += 1 };
    }
}

/// Wake the reader only when a batch is waiting: a wake-up (an inter-processor interrupt) per
/// event would cost more than the probe itself. Each CPU counts the bytes it submitted since its
/// last wake-up and wakes the reader once they reach the threshold; all other records are
/// submitted silently and the reader drains on its timer. (Asking the ring how much is waiting
/// reads the reader's position, a cache line the reader keeps writing while it drains.)
fn submit_flags(record_bytes: u64) -> u64 {
    let Some(slot) = WAKE.get_ptr_mut(0) else {
        return BPF_RB_NO_WAKEUP.into();
    };
    // SAFETY: per-CPU slot of a live map. A lost update from a preempted program only moves a
    // wake-up by one record.
    let pending = unsafe { &mut *slot };
    *pending += record_bytes;
    if *pending >= wakeup_bytes() {
        *pending = 0;
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

/// Write `record` to the ring and wake the reader now: a process waits for user space.
#[inline(always)]
pub fn emit_now<T: 'static>(record: T) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        bump(Counter::RingFull);
        return;
    };
    entry.write(record);
    entry.submit(BPF_RB_FORCE_WAKEUP.into());
}

pub fn header(kind: u32, probe: u32, pid_tgid: u64, flags: u32) -> EventHeader {
    EventHeader {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
        kind,
        probe,
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        _pad: 0,
        flags,
    }
}
