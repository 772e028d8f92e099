//! Ring-buffer records → rows of the events table.

use trace_format::{
    names::{Event as Column, Runtime},
    write::Row,
};
use tracer_common::event::EventKind;

use super::{attach, decode::Event};
use crate::probes;

/// The `event` column value of a record kind. Region events (CPython's arenas) are written as
/// `alloc`/`free` of their own domain.
pub(super) fn column_event(kind: EventKind) -> Column {
    match kind {
        EventKind::Alloc | EventKind::RegionAlloc => Column::Alloc,
        EventKind::Free | EventKind::RegionFree => Column::Free,
        EventKind::Realloc => Column::Realloc,
        EventKind::Mmap => Column::Mmap,
        EventKind::Munmap => Column::Munmap,
        EventKind::Mremap => Column::Mremap,
        EventKind::Brk => Column::Brk,
        EventKind::Mprotect => Column::Mprotect,
        EventKind::Madvise => Column::Madvise,
        EventKind::GcStart => Column::GcStart,
        EventKind::GcEnd => Column::GcEnd,
        EventKind::StwStart => Column::StwStart,
        EventKind::StwEnd => Column::StwEnd,
        // Never a row: the recording takes process records out of the stream before rows are
        // made (see `session::Recording::drain_ring`).
        EventKind::Process => Column::Alloc,
    }
}

/// Names of Go types seen in this trace, by (probe, type pointer).
#[derive(Default)]
pub(super) struct TypeCache {
    names: rustc_hash::FxHashMap<(u32, u64), Option<String>>,
}

impl TypeCache {
    /// Resolves the type of a Go allocation row once.
    pub(super) fn learn(&mut self, event: &Event, table: &attach::ProbeTable) {
        let Event::Alloc { header, event, .. } = event else {
            return;
        };
        let Some(types) = table.meta(header.probe).and_then(|m| m.types.as_ref()) else {
            return;
        };
        if event.arg != 0 {
            self.names
                .entry((header.probe, event.arg))
                .or_insert_with(|| types.type_name(event.arg));
        }
    }

    fn get(&self, probe: u32, type_ptr: u64) -> Option<&str> {
        self.names.get(&(probe, type_ptr))?.as_deref()
    }
}

/// Puts a runtime event's value into the column its role names.
fn fill_role<'a>(row: &mut Row<'a>, role: probes::ValueRole, value: u64) {
    use probes::ValueRole;
    match role {
        ValueRole::Unused => {}
        ValueRole::GcCycle { offset } => row.gc_cycle = Some(value.wrapping_add(offset)),
        ValueRole::HeapLive => row.heap_live = Some(value),
        ValueRole::HeapGoal => row.heap_goal = Some(value),
        // A negative `int` (3.13's GENERATION_AUTO, -1: the collector picks the generation
        // itself) is no generation: left empty.
        ValueRole::Generation => {
            row.gc_generation = u32::try_from(value)
                .ok()
                .filter(|&g| i32::try_from(g).is_ok())
        }
        ValueRole::GenerationConst(g) => row.gc_generation = Some(g),
        // u64::MAX: the runtime did not report it (see RUNTIME_DEREF_STASH).
        ValueRole::Collected => row.collected = (value != u64::MAX).then_some(value),
        ValueRole::Uncollectable => row.uncollectable = (value != u64::MAX).then_some(value),
        ValueRole::Reason(names) => {
            row.reason = usize::try_from(value)
                .ok()
                .and_then(|i| names.get(i))
                .copied()
        }
    }
}

/// One row of the events table.
pub(super) fn to_row<'a>(
    event: &Event,
    table: &'a attach::ProbeTable,
    types: &'a TypeCache,
    stack_id: Option<u32>,
) -> Row<'a> {
    let header = event.header();
    let meta = table.meta(header.probe);
    let func = meta.map_or("unknown", |m| m.func.as_str());
    let runtime = meta.map_or(Runtime::Native, |m| m.runtime);
    let base = Row {
        ts_ns: header.ts_ns,
        pid: header.pid,
        tid: header.tid,
        func,
        runtime,
        domain: meta.and_then(|m| m.domain),
        stack_id,
        ..Row::default()
    };
    match *event {
        Event::Alloc { kind, event, .. } => {
            let is_go = runtime == Runtime::Go;
            Row {
                event: column_event(kind),
                addr: event.addr,
                size: event.size,
                old_addr: (kind == EventKind::Realloc).then_some(event.arg),
                align: (!is_go && kind == EventKind::Alloc && event.arg != 0).then_some(event.arg),
                go_type: if is_go {
                    types.get(header.probe, event.arg)
                } else {
                    None
                },
                ..base
            }
        }
        Event::Runtime {
            kind: EventKind::RegionAlloc,
            event,
            ..
        } => Row {
            event: Column::Alloc,
            addr: event.arg,
            size: event.values[0],
            ..base
        },
        Event::Runtime {
            kind: EventKind::RegionFree,
            event,
            ..
        } => Row {
            event: Column::Free,
            addr: event.arg,
            size: event.values[0],
            ..base
        },
        Event::Runtime { kind, event, .. } => {
            let mut row = Row {
                event: column_event(kind),
                ..base
            };
            if let Some(meta) = meta {
                for (role, value) in meta.roles.iter().zip(event.values) {
                    fill_role(&mut row, *role, value);
                }
                fill_role(&mut row, meta.arg_role, event.arg);
            }
            row
        }
        Event::Stats { kind, event, .. } => {
            let mut row = Row {
                event: column_event(kind),
                ..base
            };
            if let Some(meta) = meta {
                let mut cycle = Vec::new();
                for (&(role, size), value) in meta.stat_roles.iter().zip(event.values) {
                    match role {
                        probes::StatRole::Value(role) => fill_role(&mut row, role, value),
                        probes::StatRole::Cycle(what) => cycle.push((what, value, size)),
                    }
                }
                if !cycle.is_empty() {
                    row.go_cycle = crate::golang::cycle_figures(cycle);
                }
            }
            row
        }
        // Not a row: process records never get here (see `session::Recording::drain_ring`).
        Event::Process { .. } => base,
        Event::Map { kind, event, .. } => {
            let failed = event.ret < 0 && kind != EventKind::Brk;
            let errno = failed.then(|| event.ret.unsigned_abs() as u32);
            let result_addr = if failed { 0 } else { event.addr };
            let row = Row {
                event: column_event(kind),
                addr: event.addr,
                size: event.len,
                errno,
                ..base
            };
            match kind {
                EventKind::Mmap => Row {
                    addr: result_addr,
                    prot: Some(event.prot),
                    map_flags: Some(event.flags),
                    fd: Some(event.fd),
                    ..row
                },
                EventKind::Mremap => Row {
                    addr: result_addr,
                    old_addr: Some(event.old_addr),
                    old_size: Some(event.old_len),
                    map_flags: Some(event.flags),
                    ..row
                },
                EventKind::Brk => Row {
                    old_addr: Some(event.old_addr),
                    ..row
                },
                EventKind::Mprotect => Row {
                    prot: Some(event.prot),
                    ..row
                },
                EventKind::Madvise => Row {
                    map_flags: Some(event.flags),
                    ..row
                },
                _ => row,
            }
        }
    }
}

/// A new executable file mapping: time to look for allocators in it (dlopen).
pub(super) fn maps_new_code(event: &Event) -> bool {
    const PROT_EXEC: u32 = 4;
    matches!(event, Event::Map { kind: EventKind::Mmap, event, .. } if event.ret >= 0 && event.fd >= 0 && event.prot & PROT_EXEC != 0)
}
