//! Property tests: random allocation programs against a plain model of the heap.

// Tests may unwrap (the project rule); helpers outside #[test] functions need it said.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use analysis::report::{self, Options};
use common::*;
use proptest::prelude::*;
use trace_format::write::Row;

#[derive(Clone, Debug)]
enum Op {
    Alloc(u8, u16),
    Free(u8),
    Realloc(u8, u16, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 0u16..5000).prop_map(|(s, n)| Op::Alloc(s, n)),
        3 => (0u8..24).prop_map(Op::Free),
        1 => (0u8..24, 1u16..5000, any::<bool>()).prop_map(|(s, n, m)| Op::Realloc(s, n, m)),
    ]
}

/// Turns ops into rows while keeping the model: live address → size, and the running peak.
fn program(ops: &[Op]) -> (Vec<Row<'static>>, BTreeMap<u64, u64>, u64, u64, u64) {
    let mut rows = vec![brk(1, HEAP + 0x100_0000)];
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    let mut slots: [Option<u64>; 24] = [None; 24];
    let mut next_addr = HEAP;
    let (mut ts, mut peak, mut allocated, mut freed) = (10u64, 0u64, 0u64, 0u64);
    for op in ops {
        ts += 7;
        match *op {
            Op::Alloc(s, size) if slots[s as usize].is_none() => {
                next_addr += 0x2000;
                slots[s as usize] = Some(next_addr);
                live.insert(next_addr, u64::from(size));
                allocated += u64::from(size);
                rows.push(alloc(ts, next_addr, u64::from(size)));
            }
            Op::Free(s) | Op::Alloc(s, _) => {
                if let Some(addr) = slots[s as usize].take() {
                    freed += live.remove(&addr).unwrap();
                    rows.push(free(ts, addr));
                }
            }
            Op::Realloc(s, size, moved) => {
                if let Some(old) = slots[s as usize] {
                    let addr = if moved {
                        next_addr += 0x2000;
                        next_addr
                    } else {
                        old
                    };
                    freed += live.remove(&old).unwrap();
                    live.insert(addr, u64::from(size));
                    allocated += u64::from(size);
                    slots[s as usize] = Some(addr);
                    rows.push(realloc(ts, old, addr, u64::from(size)));
                }
            }
        }
        peak = peak.max(live.values().sum());
    }
    (rows, live, peak, allocated, freed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Check on random programs that live bytes and blocks, allocated − freed = live, the peak
    /// and the leak set match a plain model of the heap.
    #[test]
    fn live_accounting_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        let (rows, live, peak, allocated, freed) = program(&ops);
        let dir = tempfile::tempdir().unwrap();
        write_trace_with(dir.path(), &rows, 50, None);
        let report = report::build(dir.path(), &Options { buckets: 17, ..Options::default() }).unwrap();
        let expected_live: u64 = live.values().sum();
        prop_assert_eq!(report.end.live_bytes, expected_live);
        prop_assert_eq!(report.end.live_blocks, live.len() as u64);
        let t = &report.timeline;
        prop_assert_eq!(t.alloc_bytes.iter().sum::<u64>(), allocated);
        prop_assert_eq!(t.free_bytes.iter().sum::<u64>(), freed);
        prop_assert_eq!(allocated - freed, expected_live);
        prop_assert_eq!(*t.live_bytes.last().unwrap(), expected_live);
        prop_assert_eq!(report.peak.live_bytes, peak);
        let peak_parts: u64 = report.peak.by_kind.iter().map(|p| p.bytes).sum();
        prop_assert_eq!(peak_parts, peak);
        let leaks: BTreeMap<u64, u64> = report.leaks.largest.iter().map(|l| (l.addr, l.size)).collect();
        prop_assert_eq!(leaks, live);
        prop_assert_eq!(report.counters.free_unknown + report.counters.alloc_over_live, 0);
        let occupancy = report.occupancy.last.unwrap();
        prop_assert!(occupancy.used_bytes + occupancy.free_bytes + occupancy.overhead_bytes == occupancy.region_bytes);
    }
}
