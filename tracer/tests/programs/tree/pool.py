"""Python multiprocessing pools, fork then spawn: each task allocates `COUNT` bytearrays of a
size of its own, and reports which worker (pid) ran it. Prints one JSON line: the tasks by
worker pid, the oracle for the trace."""
import json
import multiprocessing as mp
import os
import sys

COUNT = 50
BASE = 70001


def task(i):
    size = BASE + i
    keep = []
    for _ in range(COUNT):
        keep.append(bytearray(size))
    keep.clear()
    return os.getpid(), size


def main():
    done = {}
    for k, method in enumerate(("fork", "spawn")):
        ctx = mp.get_context(method)
        with ctx.Pool(3) as pool:
            for pid, size in pool.map(task, range(k * 6, k * 6 + 6), chunksize=1):
                done.setdefault(str(pid), []).append([method, size])
    print(json.dumps({"parent": os.getpid(), "count": COUNT, "workers": done}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
