#!/usr/bin/env python3
"""Checks a dataset made by `alloctrace export` (layout in docs/datasets.md).

    python notebooks/test_dataset.py --dataset D --trace T1 [--trace T2 ...]

* every trace is one run of the dataset, with all its rows, sorted by (pid, ts_ns, trace_row)
  and `trace_row` a permutation of the original row numbers;
* the DuckDB, Polars and pyarrow queries of docs/datasets.md, extracted from the page and run
  as written, agree with each other and with the same question asked of the original traces;
* statistics prune: for a pid and time-window filter, DuckDB scans fewer row groups than the
  dataset has (its JSON profile), and so do pyarrow's row-group statistics.

Prints one line per check; exits 1 if any failed. Run by run_all.py.
"""

import argparse
import glob
import json
import re
import sys
import tempfile
import traceback
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

DOC = Path(__file__).resolve().parent.parent / "docs" / "datasets.md"
ENGINES = ["DuckDB", "Polars", "pyarrow"]


def doc_blocks():
    """The ```python blocks of docs/datasets.md whose first line is `# <engine>`."""
    text = DOC.read_text()
    blocks = {}
    for body in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        first = body.splitlines()[0].strip()
        if first.startswith("# ") and first[2:] in ENGINES:
            blocks[first[2:]] = body
    missing = [e for e in ENGINES if e not in blocks]
    assert not missing, f"{DOC} lacks the query for {missing}"
    return blocks


def run_dirs(root):
    return sorted(Path(p) for p in glob.glob(f"{root}/host=*/run=*") if Path(p, "run.json").is_file())


def trace_rows(trace):
    files = sorted(Path(trace, "events").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def check_runs(root, traces):
    """Each trace is exactly one run, with every row, sorted, trace_row a permutation."""
    runs = run_dirs(root)
    by_run_json = {d.joinpath("run.json").read_bytes(): d for d in runs}
    for trace in traces:
        run = by_run_json.get(Path(trace, "run.json").read_bytes())
        assert run is not None, f"{trace} was not exported into {root}"
        original = trace_rows(trace)
        files = sorted(run.glob("events/*.parquet"))
        exported = pa.concat_tables([pq.read_table(f) for f in files])
        assert exported.num_rows == original.num_rows, (trace, exported.num_rows, original.num_rows)
        key = exported.select(["pid", "ts_ns", "trace_row"]).to_pandas()
        assert key.equals(key.sort_values(["pid", "ts_ns", "trace_row"], kind="stable").reset_index(drop=True)), (
            f"{run} is not sorted by (pid, ts_ns, trace_row)"
        )
        order = key["trace_row"].to_numpy()
        assert sorted(order.tolist()) == list(range(original.num_rows)), f"{run}: trace_row is not a permutation"
        # Each exported row is the original row its trace_row names.
        for column in ["ts_ns", "pid", "addr", "size"]:
            assert (original.column(column).to_numpy()[order] == exported.column(column).to_numpy()).all(), (run, column)
        meta = pq.ParquetFile(files[0]).metadata.metadata
        assert meta[b"alloctrace.dataset.sorted_by"] == b"pid,ts_ns,trace_row", meta
    return f"{len(traces)} traces found in {len(runs)} runs, rows sorted and complete"


def pick_window(root):
    """A pid and a time window inside the first row group of the run with the most row groups."""
    best = None
    for run in run_dirs(root):
        files = sorted(run.glob("events/*.parquet"))
        groups = sum(pq.ParquetFile(f).metadata.num_row_groups for f in files)
        if best is None or groups > best[0]:
            best = (groups, files[0])
    # From the rows rather than the statistics, so the window surely holds some: a program
    # can be quiet for a while.
    first = pq.ParquetFile(best[1]).read_row_group(0, columns=["pid", "ts_ns"])
    n = first.num_rows
    return first["pid"][0].as_py(), first["ts_ns"][n // 4].as_py(), first["ts_ns"][n // 2].as_py()


def normalise(result):
    if isinstance(result, pa.Table):
        result = result.to_pandas()
    elif not isinstance(result, pd.DataFrame):
        result = result.to_pandas()
    frame = result[["host", "run", "func", "allocations", "bytes"]].copy()
    for c in ["host", "run", "func"]:
        frame[c] = frame[c].astype(str)
    for c in ["allocations", "bytes"]:
        frame[c] = frame[c].astype("int64")
    return frame.sort_values(["host", "run", "func"]).reset_index(drop=True)


def expected(root, traces, pid, t0, t1):
    """The documented question asked of the original traces, without the dataset."""
    runs = {d.joinpath("run.json").read_bytes(): d for d in run_dirs(root)}
    parts = []
    for trace in traces:
        run = runs[Path(trace, "run.json").read_bytes()]
        t = trace_rows(trace).to_pandas()
        t = t[(t["pid"] == pid) & (t["ts_ns"] >= t0) & (t["ts_ns"] <= t1) & (t["event"] == "alloc")]
        g = t.groupby(t["func"].astype(str)).agg(allocations=("size", "size"), bytes=("size", "sum")).reset_index()
        g["host"] = run.parent.name.removeprefix("host=")
        g["run"] = run.name.removeprefix("run=")
        parts.append(g)
    return normalise(pd.concat(parts)) if parts else None


def check_queries(root, traces):
    pid, t0, t1 = pick_window(root)
    results = {}
    for engine, code in doc_blocks().items():
        scope = {"ROOT": str(root), "PID": pid, "T0": t0, "T1": t1}
        exec(compile(code, f"{DOC.name}:{engine}", "exec"), scope)
        results[engine] = normalise(scope["result"])
    reference = expected(root, traces, pid, t0, t1)
    assert len(reference), f"the window pid={pid} [{t0}, {t1}] selects no allocation"
    for engine, frame in results.items():
        pd.testing.assert_frame_equal(frame, reference, check_dtype=False, obj=engine)
    return f"DuckDB, Polars and pyarrow agree with the traces: pid {pid}, {int(reference['allocations'].sum())} allocations"


def check_pruning_duckdb(root):
    pid, t0, t1 = pick_window(root)
    code = doc_blocks()["DuckDB"]
    query = re.search(r'f"""(.*?)"""', code, flags=re.S).group(1)
    query = query.format(ROOT=root, PID=pid, T0=t0, T1=t1)
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp, "profile.json")
        con = duckdb.connect()
        con.execute("PRAGMA enable_profiling = 'json'")
        con.execute(f"PRAGMA profiling_output = '{profile}'")
        con.execute(query).fetchall()
        con.execute("PRAGMA disable_profiling")
        tree = json.loads(profile.read_text())
    scans = []

    def walk(node):
        if "row_groups_scanned" in node:
            scans.append((node["row_groups_scanned"], node["total_row_groups_to_scan"]))
        for child in node.get("children", []) + node.get("operator", []):
            walk(child)

    walk(tree)
    assert scans, "no table scan with row-group counts in DuckDB's profile"
    scanned, total = scans[0]
    assert 1 <= scanned < total, f"DuckDB scanned {scanned} of {total} row groups"
    return f"DuckDB scanned {scanned} of {total} row groups"


def check_pruning_pyarrow(root):
    pid, t0, t1 = pick_window(root)
    files = sorted(glob.glob(f"{root}/host=*/run=*/events/*.parquet"))
    events = ds.dataset(files, format="parquet", partitioning=ds.partitioning(flavor="hive"), partition_base_dir=str(root))
    window = (pc.field("pid") == pid) & (pc.field("ts_ns") >= t0) & (pc.field("ts_ns") <= t1)
    total = sum(f.num_row_groups for f in events.get_fragments())
    kept = sum(len(f.split_by_row_group(window, schema=events.schema)) for f in events.get_fragments(filter=window))
    assert 1 <= kept < total, f"pyarrow statistics keep {kept} of {total} row groups"
    return f"pyarrow statistics keep {kept} of {total} row groups"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--trace", action="append", default=[], type=Path)
    args = parser.parse_args()
    root = args.dataset.resolve()
    traces = [t.resolve() for t in args.trace]
    checks = [
        ("runs", lambda: check_runs(root, traces)),
        ("documented queries", lambda: check_queries(root, traces)),
        ("DuckDB pruning", lambda: check_pruning_duckdb(root)),
        ("pyarrow pruning", lambda: check_pruning_pyarrow(root)),
    ]
    failed = 0
    for name, check in checks:
        try:
            print(f"  ok   {name}: {check()}", flush=True)
        except Exception as err:  # a failed check is reported, the others still run
            failed += 1
            print(f"  FAIL {name}: {err!r}", flush=True)
            traceback.print_exc()
    print(f"test_dataset: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
