//! Ring-buffer records → typed events.
//!
//! Decoded field by field at the offsets of the `tracer_common` structs (no pointer casts), so a
//! short or unknown record is reported instead of misread.

use core::mem::{offset_of, size_of};

use tracer_common::{
    alloc::AllocEvent,
    event::{EventHeader, EventKind, FLAG_STATS},
    gc::{MAX_STAT_READS, RuntimeEvent, StatsEvent},
    mem::MapEvent,
    process::{ProcessChange, ProcessEvent},
};

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Alloc {
        header: EventHeader,
        kind: EventKind,
        event: AllocEvent,
    },
    Map {
        header: EventHeader,
        kind: EventKind,
        event: MapEvent,
    },
    Runtime {
        header: EventHeader,
        kind: EventKind,
        event: RuntimeEvent,
    },
    /// A runtime event with many values (`FLAG_STATS`).
    Stats {
        header: EventHeader,
        kind: EventKind,
        event: StatsEvent,
    },
    /// A change in the process tree (not a row of `events`).
    Process {
        header: EventHeader,
        change: ProcessChange,
        event: ProcessEvent,
    },
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn header(b: &[u8]) -> Option<EventHeader> {
    Some(EventHeader {
        ts_ns: u64_at(b, offset_of!(EventHeader, ts_ns))?,
        kind: u32_at(b, offset_of!(EventHeader, kind))?,
        probe: u32_at(b, offset_of!(EventHeader, probe))?,
        pid: u32_at(b, offset_of!(EventHeader, pid))?,
        tid: u32_at(b, offset_of!(EventHeader, tid))?,
        _pad: 0,
        flags: u32_at(b, offset_of!(EventHeader, flags))?,
    })
}

/// Decodes one record; `None` if it is too short or of an unknown kind.
pub fn decode(b: &[u8]) -> Option<Event> {
    let header = header(b)?;
    let kind = EventKind::from_u32(header.kind)?;
    match kind {
        EventKind::Process => {
            if b.len() < size_of::<ProcessEvent>() {
                return None;
            }
            let change = ProcessChange::from_u32(u32_at(b, offset_of!(ProcessEvent, change))?)?;
            let event = ProcessEvent {
                header,
                change: change as u32,
                other: u32_at(b, offset_of!(ProcessEvent, other))?,
                status: u32_at(b, offset_of!(ProcessEvent, status))?,
                held: u32_at(b, offset_of!(ProcessEvent, held))?,
            };
            Some(Event::Process {
                header,
                change,
                event,
            })
        }
        EventKind::Alloc | EventKind::Free | EventKind::Realloc => {
            if b.len() < size_of::<AllocEvent>() {
                return None;
            }
            let event = AllocEvent {
                header,
                addr: u64_at(b, offset_of!(AllocEvent, addr))?,
                size: u64_at(b, offset_of!(AllocEvent, size))?,
                arg: u64_at(b, offset_of!(AllocEvent, arg))?,
                stack: u64_at(b, offset_of!(AllocEvent, stack))?,
            };
            Some(Event::Alloc {
                header,
                kind,
                event,
            })
        }
        EventKind::GcStart
        | EventKind::GcEnd
        | EventKind::StwStart
        | EventKind::StwEnd
        | EventKind::RegionAlloc
        | EventKind::RegionFree
            if header.flags & FLAG_STATS != 0 =>
        {
            if b.len() < size_of::<StatsEvent>() {
                return None;
            }
            let at = offset_of!(StatsEvent, values);
            let mut values = [0u64; MAX_STAT_READS];
            for (i, v) in values.iter_mut().enumerate() {
                *v = u64_at(b, at + 8 * i)?;
            }
            Some(Event::Stats {
                header,
                kind,
                event: StatsEvent { header, values },
            })
        }
        EventKind::GcStart
        | EventKind::GcEnd
        | EventKind::StwStart
        | EventKind::StwEnd
        | EventKind::RegionAlloc
        | EventKind::RegionFree => {
            if b.len() < size_of::<RuntimeEvent>() {
                return None;
            }
            let values = offset_of!(RuntimeEvent, values);
            let event = RuntimeEvent {
                header,
                values: [
                    u64_at(b, values)?,
                    u64_at(b, values + 8)?,
                    u64_at(b, values + 16)?,
                ],
                arg: u64_at(b, offset_of!(RuntimeEvent, arg))?,
            };
            Some(Event::Runtime {
                header,
                kind,
                event,
            })
        }
        _ => {
            if b.len() < size_of::<MapEvent>() {
                return None;
            }
            let event = MapEvent {
                header,
                addr: u64_at(b, offset_of!(MapEvent, addr))?,
                len: u64_at(b, offset_of!(MapEvent, len))?,
                old_addr: u64_at(b, offset_of!(MapEvent, old_addr))?,
                old_len: u64_at(b, offset_of!(MapEvent, old_len))?,
                ret: u64_at(b, offset_of!(MapEvent, ret))? as i64,
                prot: u32_at(b, offset_of!(MapEvent, prot))?,
                flags: u32_at(b, offset_of!(MapEvent, flags))?,
                fd: u32_at(b, offset_of!(MapEvent, fd))? as i32,
                _pad: 0,
            };
            Some(Event::Map {
                header,
                kind,
                event,
            })
        }
    }
}

impl Event {
    pub fn header(&self) -> &EventHeader {
        match self {
            Event::Alloc { header, .. }
            | Event::Map { header, .. }
            | Event::Runtime { header, .. }
            | Event::Stats { header, .. }
            | Event::Process { header, .. } => header,
        }
    }

    /// The `STACKS` key of an allocation row's call stack.
    pub fn stack(&self) -> Option<u64> {
        match self {
            Event::Alloc { event, .. } if event.stack != 0 => Some(event.stack),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of_alloc(e: &AllocEvent) -> Vec<u8> {
        let mut v = Vec::new();
        let h = &e.header;
        v.extend(h.ts_ns.to_ne_bytes());
        v.extend(h.kind.to_ne_bytes());
        v.extend(h.probe.to_ne_bytes());
        v.extend(h.pid.to_ne_bytes());
        v.extend(h.tid.to_ne_bytes());
        v.extend(h._pad.to_ne_bytes());
        v.extend(h.flags.to_ne_bytes());
        v.extend(e.addr.to_ne_bytes());
        v.extend(e.size.to_ne_bytes());
        v.extend(e.arg.to_ne_bytes());
        v.extend(e.stack.to_ne_bytes());
        v
    }

    /// Check that an allocation record decodes field by field, and that short or unknown
    /// records are rejected rather than misread.
    #[test]
    fn alloc_record() {
        let header = EventHeader {
            ts_ns: 5,
            kind: EventKind::Realloc as u32,
            probe: 17,
            pid: 1,
            tid: 2,
            _pad: 0,
            flags: 0,
        };
        let e = AllocEvent {
            header,
            addr: 0x10,
            size: 32,
            arg: 0x20,
            stack: 0x30,
        };
        let bytes = bytes_of_alloc(&e);
        assert_eq!(
            decode(&bytes),
            Some(Event::Alloc {
                header,
                kind: EventKind::Realloc,
                event: e
            })
        );
        assert_eq!(decode(&bytes[..40]), None);
        let mut unknown = bytes.clone();
        unknown[8] = 200;
        assert_eq!(decode(&unknown), None);
    }
}
