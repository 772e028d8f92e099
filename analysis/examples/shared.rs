//! Times the two aggregations `analysis/benches/duckdb_compare.py` computes with DuckDB, each
//! alone and the way alloctrace computes it, on the same files:
//! `cargo run --release -p alloctrace-analysis --example shared -- TRACE [BUCKETS]`.
//!
//! - size histogram: straight from the rows (alloc and realloc rows with a size), like DuckDB's
//!   GROUP BY; log2 buckets of `util::log2_bucket`.
//! - live-bytes timeline: the replay alone (no reducer), keeping the live bytes at the end of
//!   each time bucket; frees need the size of the block they end, which is what the replay
//!   resolves.
//!
//! The full report does both and every other reduction in one pass (`--example report`).

use std::{env, path::PathBuf, process::ExitCode, time::Instant};

use analysis::{
    AnalysisError, Log2Hist,
    load::{Domain, Event, Trace},
    replay::{Pending, Replay},
    reports::Axis,
};

fn size_histogram(trace: &Trace) -> Result<Log2Hist, AnalysisError> {
    let mut histogram = Log2Hist::default();
    let mut reader = trace.reader();
    while let Some(batch) = reader.next_batch()? {
        let (addr, size) = (batch.addr.values(), batch.size.values());
        for i in 0..batch.rows {
            let counted = match batch.event(i) {
                Event::Alloc => batch.domain(i) != Some(Domain::Arena),
                Event::Realloc => size[i] > 0,
                _ => false,
            };
            histogram.add_if(u64::from(counted && addr[i] != 0), size[i], size[i]);
        }
    }
    Ok(histogram)
}

/// Live bytes at the end of each time bucket (DuckDB's definition: the running sum after the
/// bucket's last row).
fn live_timeline(trace: &Trace, buckets: usize) -> Result<Vec<u64>, AnalysisError> {
    let (start, end) = trace.span()?;
    let axis = Axis::new(start, end, buckets);
    let mut at_end = vec![0u64; axis.count];
    let mut replay = Replay::new(trace.run.pids.first().copied(), trace.run.start_brk);
    let mut pending = Pending::default();
    let mut reader = trace.reader();
    let (mut bucket, mut bucket_end) = (0, axis.end_ns(0));
    while let Some(batch) = reader.next_batch()? {
        let ts = batch.ts.values();
        for i in 0..batch.rows {
            if ts[i] >= bucket_end && bucket + 1 < axis.count {
                let next = axis.bucket(ts[i]);
                let live = at_end[bucket];
                at_end[bucket + 1..=next].fill(live);
                bucket = next;
                bucket_end = axis.end_ns(bucket);
            }
            replay.apply_prefetching(&batch, i, &mut pending);
            if let Some(ev) = pending.evs.last() {
                at_end[bucket] = ev.live_bytes;
            }
            pending.clear();
        }
    }
    let live = at_end[bucket];
    at_end[bucket + 1..].fill(live);
    Ok(at_end)
}

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: shared TRACE [BUCKETS]");
        return ExitCode::FAILURE;
    };
    let buckets = args.next().and_then(|b| b.parse().ok()).unwrap_or(600);
    let run = || -> Result<(), AnalysisError> {
        let trace = Trace::open(&dir)?;
        let rows = trace.rows() as f64;
        let started = Instant::now();
        let histogram = size_histogram(&trace)?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "size histogram: {} buckets, {} allocations, {} bytes in {took:.2} s ({:.1} M rows/s)",
            histogram.counts.iter().filter(|&&c| c > 0).count(),
            histogram.total(),
            histogram.sums.iter().sum::<u64>(),
            rows / took / 1e6
        );
        let started = Instant::now();
        let timeline = live_timeline(&trace, buckets)?;
        let took = started.elapsed().as_secs_f64();
        let (peak_bucket, peak) = timeline
            .iter()
            .enumerate()
            .max_by_key(|(b, v)| (**v, std::cmp::Reverse(*b)))
            .map_or((0, 0), |(b, v)| (b, *v));
        println!(
            "live-bytes timeline: {} buckets, live at end {}, highest bucket end {peak} (bucket {peak_bucket}) in {took:.2} s ({:.1} M rows/s)",
            timeline.len(),
            timeline.last().copied().unwrap_or(0),
            rows / took / 1e6
        );
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("shared: {err}");
            ExitCode::FAILURE
        }
    }
}
