//! One pass over a trace: its rows, in file order, through a [`Replay`], and the resolved
//! events handed to a [`Consumer`] in small chunks, each within one bucket of a time [`Axis`].
//! The report and the profile exports both read traces this way, so they agree on what is
//! live and when.

use crate::{
    error::AnalysisError,
    load::{Names, Trace},
    replay::{Pending, Replay},
    reports::Axis,
};

/// Resolved events handed over at once: small enough to stay in cache.
const CHUNK_EVENTS: usize = 256;

/// What a pass feeds.
pub trait Consumer {
    /// Events (and GC marks) resolved from consecutive rows, all in `bucket`. The pass clears
    /// `pending` afterwards.
    fn chunk(&mut self, bucket: usize, pending: &Pending);

    /// `bucket` is over; `replay` holds the state after its last row.
    fn bucket_end(&mut self, _bucket: usize, _replay: &Replay) {}
}

/// Replays every row of `trace` through `replay` into `consumer`, bucket by bucket along
/// `axis` (every bucket gets its `bucket_end`, empty ones included). Returns the interned
/// names the rows referred to.
pub fn run(
    trace: &Trace,
    axis: Axis,
    replay: &mut Replay,
    consumer: &mut impl Consumer,
) -> Result<Names, AnalysisError> {
    let mut pending = Pending::default();
    let flush = |bucket: usize, pending: &mut Pending, consumer: &mut _| {
        if !pending.is_empty() {
            Consumer::chunk(consumer, bucket, pending);
            pending.clear();
        }
    };
    let mut reader = trace.reader();
    let mut bucket = 0;
    let mut bucket_end = axis.end_ns(0);
    while let Some(batch) = reader.next_batch()? {
        let ts = batch.ts.values();
        let pids = batch.pid.values();
        for (i, &t) in ts.iter().enumerate().take(batch.rows) {
            if trace.only_pid.is_some_and(|only| pids[i] != only) {
                continue;
            }
            if t >= bucket_end && bucket + 1 < axis.count {
                flush(bucket, &mut pending, consumer);
                let next = axis.bucket(t);
                while bucket < next {
                    consumer.bucket_end(bucket, replay);
                    bucket += 1;
                }
                bucket_end = axis.end_ns(bucket);
            } else if pending.evs.len() >= CHUNK_EVENTS {
                flush(bucket, &mut pending, consumer);
            }
            replay.apply_prefetching(&batch, i, &mut pending);
        }
    }
    flush(bucket, &mut pending, consumer);
    while bucket < axis.count {
        consumer.bucket_end(bucket, replay);
        bucket += 1;
    }
    Ok(reader.into_names())
}
