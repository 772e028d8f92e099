#!/usr/bin/env python3
"""Compute the size histogram and the live-bytes timeline of an alloctrace trace with DuckDB.

The same two results the Rust report computes (`sizes.histogram`, `timeline.live_bytes`), on
the same Parquet files, so the two can be timed side by side:

    pip install duckdb
    python3 analysis/benches/duckdb_compare.py TRACE_DIR [--buckets 600] [--threads 1]

It prints the wall time of each query and a few numbers to cross-check against the report's
summary.json (allocations, bytes, live bytes at the end, peak bucket). Rows are matched in
causal order (segment file, then row number), like the Rust replay; realloc counts as a free
of old_addr plus an allocation at addr. Nested wrapper pairs and Python arenas are not
special-cased here, so compare on native traces.
"""

import argparse
import glob
import os
import sys
import time

try:
    import duckdb
except ImportError:
    sys.exit("duckdb_compare.py needs DuckDB: pip install duckdb")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", help="trace directory (run.json + events/part-*.parquet)")
    parser.add_argument("--buckets", type=int, default=600, help="time buckets of the live-bytes timeline")
    parser.add_argument("--threads", type=int, default=1, help="DuckDB threads (1 to compare with one core)")
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.trace, "events", "part-*.parquet")))
    if not files:
        sys.exit(f"{args.trace}: no events/part-*.parquet")
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    # Causal order: segment files sort by name, rows by their position in the file.
    con.execute(
        f"""
        CREATE VIEW events AS
        SELECT ts_ns, pid, addr, size, old_addr, CAST(event AS VARCHAR) AS event, CAST(domain AS VARCHAR) AS domain,
               (list_position({file_list}, filename)::BIGINT << 40) + file_row_number AS ord
        FROM read_parquet({file_list}, filename = true, file_row_number = true)
        """
    )

    started = time.perf_counter()
    sizes = con.execute(
        """
        SELECT CASE WHEN size = 0 THEN 0 ELSE CAST(floor(log2(size)) AS INTEGER) + 1 END AS bucket,
               count(*) AS allocations, sum(size) AS bytes
        FROM events
        WHERE addr <> 0 AND ((event = 'alloc' AND coalesce(domain, '') <> 'arena') OR (event = 'realloc' AND size > 0))
        GROUP BY bucket ORDER BY bucket
        """
    ).fetchall()
    sizes_s = time.perf_counter() - started

    started = time.perf_counter()
    live = con.execute(
        f"""
        WITH bounds AS (SELECT min(ts_ns) AS t0, max(ts_ns) AS t1 FROM events),
        width AS (SELECT t0, greatest(1, ceil((t1 - t0 + 1) / {args.buckets}))::UBIGINT AS w FROM bounds),
        starts AS (
            SELECT pid, addr, ord, ts_ns, size FROM events
            WHERE addr <> 0 AND ((event = 'alloc' AND coalesce(domain, '') <> 'arena') OR (event = 'realloc' AND size > 0))
        ),
        ends AS (
            SELECT pid, addr, ord, ts_ns FROM events WHERE event = 'free' AND addr <> 0
            UNION ALL
            SELECT pid, old_addr AS addr, ord, ts_ns FROM events
            WHERE event = 'realloc' AND coalesce(old_addr, 0) <> 0 AND (addr <> 0 OR size = 0)
        ),
        matched AS (
            SELECT e.ts_ns, -(s.size::BIGINT) AS delta FROM ends e ASOF JOIN starts s ON e.pid = s.pid AND e.addr = s.addr AND e.ord > s.ord
        ),
        deltas AS (
            SELECT ts_ns, size::HUGEINT AS delta FROM starts
            UNION ALL
            SELECT ts_ns, delta::HUGEINT FROM matched
        ),
        per_bucket AS (
            SELECT least(({args.buckets} - 1)::UBIGINT, (d.ts_ns - w.t0) // w.w) AS bucket, sum(delta) AS delta
            FROM deltas d, width w GROUP BY bucket
        )
        SELECT bucket, sum(delta) OVER (ORDER BY bucket) AS live_bytes FROM per_bucket ORDER BY bucket
        """
    ).fetchall()
    live_s = time.perf_counter() - started

    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    allocations = sum(r[1] for r in sizes)
    total_bytes = sum(r[2] for r in sizes)
    print(f"rows: {rows}")
    print(f"size histogram: {len(sizes)} buckets, {allocations} allocations, {total_bytes} bytes in {sizes_s:.2f} s ({rows / sizes_s / 1e6:.1f} M rows/s)")
    if live:
        peak = max(live, key=lambda r: r[1])
        print(f"live-bytes timeline: {len(live)} non-empty buckets, live at end {live[-1][1]}, highest bucket end {peak[1]} (bucket {peak[0]}) in {live_s:.2f} s ({rows / live_s / 1e6:.1f} M rows/s)")
    print(f"total: {sizes_s + live_s:.2f} s with {args.threads} DuckDB thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
