#!/usr/bin/env python3
"""Run every notebook top to bottom on given traces and a dataset, then the dataset tests.

    python notebooks/run_all.py --trace T1 [--trace T2 ...] --dataset D [--out DIR]

* `01-trace-tour` and `03-fragmentation` run once per trace, `02-cross-language` once over the
  dataset; each gets its paths injected after its cell tagged `parameters` (as papermill does).
* The notebooks assert their own results (totals and fragmentation equal `summary.json`), so a
  failed assertion is a failed cell; executed copies, outputs included, go to `--out`.
* `test_dataset.py` checks the dataset: the documented queries and row-group pruning.

Exits 0 when everything passed, 1 when anything failed, 2 on bad arguments. The last line is
`notebooks: N passed, N failed`.

The traces must have been reported (`alloctrace report`, for summary.json) and exported into
the dataset (`alloctrace export --dataset D TRACE`). Needs the packages of requirements.txt.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_TRACE = ["01-trace-tour.ipynb", "03-fragmentation.ipynb"]
PER_DATASET = ["02-cross-language.ipynb"]
CELL_TIMEOUT_S = 600


def inject(nb, params):
    """Inserts a cell assigning `params` right after the cell tagged `parameters`."""
    import nbformat

    source = "# Parameters injected by run_all.py\n" + "".join(
        f"{name} = {value!r}\n" for name, value in params.items()
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["injected-parameters"]
    cell.pop("id", None)
    index = next(
        (i + 1 for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])),
        0,
    )
    nb.cells.insert(index, cell)


def execute(notebook, params, out_path):
    """Executes one notebook; returns None on success, else a one-line reason."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    inject(nb, params)
    # The kernel is this interpreter's ipykernel (the venv's), on localhost ports.
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(HERE)}},
    )
    try:
        client.execute()
        return None
    except CellExecutionError as err:
        # The first line naming the exception is the useful one (the assertion message).
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        lines = [l for l in text.splitlines() if l.strip()]
        reason = next((l for l in reversed(lines) if "Error" in l), lines[-1] if lines else "cell failed")
        return reason.strip()
    except (CellTimeoutError, DeadKernelError) as err:
        return f"{type(err).__name__}: {err}".splitlines()[0]
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_path)


def check_inputs(traces, dataset):
    problems = []
    for t in traces:
        if not (t / "run.json").is_file() or not any((t / "events").glob("part-*.parquet")):
            problems.append(f"{t} is not a trace directory (run.json and events/part-*.parquet)")
        elif not (t / "summary.json").is_file():
            problems.append(f"{t} has no summary.json: run `alloctrace report {t}` first")
    if not any(dataset.glob("host=*/run=*/events/*.parquet")):
        problems.append(
            f"{dataset} holds no exported run: run `alloctrace export --dataset {dataset} TRACE` for each trace"
        )
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", action="append", required=True, type=Path, help="a trace directory (repeatable)")
    parser.add_argument("--dataset", required=True, type=Path, help="the dataset root the traces were exported into")
    parser.add_argument("--out", type=Path, help="where executed notebooks go (default: a temporary directory)")
    args = parser.parse_args()
    traces = [t.resolve() for t in args.trace]
    dataset = args.dataset.resolve()
    problems = check_inputs(traces, dataset)
    if problems:
        for p in problems:
            print(f"run_all: {p}", file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="alloctrace-notebooks-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Kernel connection files and Jupyter's own state stay out of the user's home.
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", str(out / ".jupyter-runtime"))
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    jobs = []
    for name in PER_TRACE:
        for i, t in enumerate(traces):
            label = f"{Path(name).stem}.{i}-{t.name}"
            jobs.append((label, HERE / name, {"trace": str(t)}, out / f"{label}.ipynb"))
    for name in PER_DATASET:
        label = Path(name).stem
        params = {"dataset": str(dataset), "traces": [str(t) for t in traces]}
        jobs.append((label, HERE / name, params, out / f"{label}.ipynb"))

    passed, failed = 0, 0
    started = time.monotonic()
    for label, notebook, params, out_path in jobs:
        t0 = time.monotonic()
        reason = execute(notebook, params, out_path)
        took = time.monotonic() - t0
        if reason is None:
            passed += 1
            print(f"PASS {label} ({took:.1f} s)", flush=True)
        else:
            failed += 1
            print(f"FAIL {label} ({took:.1f} s): {reason}\n     executed copy: {out_path}", flush=True)

    t0 = time.monotonic()
    cmd = [sys.executable, str(HERE / "test_dataset.py"), "--dataset", str(dataset)]
    for t in traces:
        cmd += ["--trace", str(t)]
    result = subprocess.run(cmd, cwd=HERE, check=False)
    took = time.monotonic() - t0
    if result.returncode == 0:
        passed += 1
        print(f"PASS test_dataset.py ({took:.1f} s)", flush=True)
    else:
        failed += 1
        print(f"FAIL test_dataset.py ({took:.1f} s): exit status {result.returncode}", flush=True)

    print(f"executed notebooks in {out} ({time.monotonic() - started:.0f} s in all)")
    print(f"notebooks: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
