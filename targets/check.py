#!/usr/bin/env python3
"""Self-check of the workload targets (standard library only).

    python3 targets/check.py [MANIFEST]      (default: target/targets/manifest.json)

Runs every runnable x scenario of the manifest at tiny sizes, with one and with three threads,
and checks:
  - the process exits 0 and prints exactly one JSON line with the documented fields and types,
    echoing its lang, variant, scenario, size, seed and threads;
  - the counters every language must agree on (targets/README.md, "Counters") are identical
    across all runnables: object counts, payload bytes, checksums, PRNG draws, LRU hits...;
  - each language's own invariants: bytes_requested against payload bytes (Python adds its
    33-byte bytes header per object), binary-trees' node count against the closed formula,
    heap_allocs/heap_bytes present exactly for the variants with an intermediate allocator;
  - scenarios a runnable does not list, and bad arguments, exit 2 with nothing on stdout.
Ends with 'N passed, M failed'; exits 1 if anything failed.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

TINY = {
    "binary-trees": 6,
    "churn": 5000,
    "fragmentation": 20000,  # two rounds
    "growth": 24,
    "producer-consumer": 3000,
    "cache": 20000,
}
CONFIGS = [(3, 1), (11, 3)]  # (seed, threads)

FIELDS = {
    "lang": str,
    "variant": str,
    "toolchain": str,
    "scenario": str,
    "size": int,
    "seed": int,
    "threads": int,
    "work_units": int,
    "objects": int,
    "bytes_requested": int,
    "elapsed_ms": (int, float),
    "extra": dict,
}

# Counters identical in every language and variant, per scenario.
COMMON = {
    "binary-trees": ["work_units", "objects", "extra.max_depth", "extra.trees", "extra.long_lived_check"],
    "churn": ["work_units", "objects", "extra.payload_bytes", "extra.checksum", "extra.rng_draws"],
    "fragmentation": [
        "work_units", "objects", "extra.payload_bytes", "extra.checksum", "extra.rng_draws",
        "extra.small_objects", "extra.large_objects",
    ],
    "growth": ["work_units", "extra.vectors", "extra.elements", "extra.payload_bytes", "extra.checksum", "extra.rng_draws"],
    "producer-consumer": [
        "work_units", "objects", "extra.payload_bytes", "extra.checksum", "extra.rng_draws",
        "extra.pairs", "extra.queue_capacity",
    ],
    "cache": [
        "work_units", "objects", "extra.payload_bytes", "extra.checksum", "extra.rng_draws",
        "extra.capacity", "extra.hits", "extra.misses", "extra.evictions",
    ],
}

PY_BYTES_HEADER = 33  # sys.getsizeof(b"") - 0 on 64-bit CPython 3.11


def intermediary(runnable):
    """Variants whose data allocations go through an arena, a pmr resource or sync.Pool."""
    v = runnable["variant"]
    return "arena" in v or v.startswith("pmr-") or "pool" in v


def get(line, key):
    value = line
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def command(runnable, scenario, size, seed, threads):
    subst = {"{scenario}": scenario, "{size}": str(size), "{seed}": str(seed), "{threads}": str(threads)}
    return [subst.get(arg, arg) for arg in runnable["command"]]


def run(cmd, env):
    full_env = dict(os.environ)
    full_env.update(env)
    p = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def binary_trees_nodes(size):
    max_depth = max(6, size)
    nodes = (1 << (max_depth + 2)) - 1 + (1 << (max_depth + 1)) - 1  # stretch + long-lived
    for depth in range(4, max_depth + 1, 2):
        nodes += (1 << (max_depth - depth + 4)) * ((1 << (depth + 1)) - 1)
    return nodes


class Checker:
    def __init__(self):
        self.passed = 0
        self.failures = []

    def expect(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"FAIL {what}", flush=True)

    def check_line(self, runnable, scenario, seed, threads, result):
        rid = runnable["id"]
        tag = f"{rid} {scenario} seed={seed} threads={threads}"
        code, out, err = result
        lines = out.splitlines()
        if code != 0 or len(lines) != 1:
            self.expect(False, f"{tag}: exit {code}, {len(lines)} stdout lines; stderr: {err.strip()[:500]}")
            return None
        try:
            line = json.loads(lines[0])
        except ValueError as e:
            self.expect(False, f"{tag}: stdout is not JSON ({e}): {lines[0][:200]}")
            return None
        for name, kind in FIELDS.items():
            ok = name in line and isinstance(line[name], kind) and not isinstance(line[name], bool)
            self.expect(ok, f"{tag}: field {name} missing or not {kind}")
        if not all(isinstance(v, int) for v in line.get("extra", {}).values()):
            self.expect(False, f"{tag}: extra values must be integers: {line.get('extra')}")
        size = TINY[scenario]
        echo = {"lang": runnable["lang"], "variant": runnable["variant"], "scenario": scenario,
                "size": size, "seed": seed, "threads": threads}
        for key, want in echo.items():
            self.expect(line.get(key) == want, f"{tag}: {key} is {line.get(key)!r}, expected {want!r}")
        self.check_invariants(runnable, scenario, line, tag)
        return line

    def check_invariants(self, runnable, scenario, line, tag):
        lang, extra = runnable["lang"], line["extra"]
        objects, requested = line["objects"], line["bytes_requested"]
        size = line["size"]
        self.expect(objects > 0 and requested > 0, f"{tag}: no objects counted")
        has_heap = "heap_allocs" in extra and "heap_bytes" in extra
        self.expect(has_heap == intermediary(runnable),
                    f"{tag}: heap_allocs/heap_bytes {'missing' if not has_heap else 'unexpected'}")
        if has_heap:
            self.expect(extra["heap_allocs"] > 0 and extra["heap_bytes"] > 0, f"{tag}: heap counters are zero")
        if scenario == "binary-trees":
            self.expect(objects == binary_trees_nodes(size), f"{tag}: {objects} nodes, formula says {binary_trees_nodes(size)}")
            self.expect(requested == objects * extra.get("node_size", -1), f"{tag}: bytes != nodes x node_size")
            if lang != "python":
                self.expect(extra.get("node_size") == 16, f"{tag}: node_size {extra.get('node_size')} != 16")
            return
        if scenario == "growth":
            self.expect(requested >= extra["payload_bytes"], f"{tag}: growth requested less than the final payload")
            self.expect(objects >= size, f"{tag}: fewer growth steps than vectors")
            return
        payload = extra["payload_bytes"]
        want = payload + PY_BYTES_HEADER * objects if lang == "python" else payload
        self.expect(requested == want, f"{tag}: bytes_requested {requested}, expected {want}")
        if scenario in ("churn", "producer-consumer"):
            self.expect(objects == size, f"{tag}: objects {objects} != size {size}")
        if scenario == "fragmentation":
            self.expect(extra["small_objects"] == size, f"{tag}: small_objects != size")
        if scenario == "cache":
            self.expect(extra["hits"] + extra["misses"] == size, f"{tag}: hits + misses != size")


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "targets", "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    runnables = manifest["runnables"]
    scenarios = [s["name"] for s in manifest["scenarios"]]
    checker = Checker()
    self_check = set(TINY) == set(scenarios)
    checker.expect(self_check, f"manifest scenarios {scenarios} differ from the checked ones {sorted(TINY)}")

    jobs = []
    for r in runnables:
        for scenario in scenarios:
            for seed, threads in CONFIGS:
                if scenario in r["scenarios"]:
                    jobs.append((r, scenario, seed, threads))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(
            lambda j: run(command(j[0], j[1], TINY[j[1]], j[2], j[3]), j[0]["env"]), jobs))

    lines = {}
    for (r, scenario, seed, threads), result in zip(jobs, results):
        line = checker.check_line(r, scenario, seed, threads, result)
        if line is not None:
            lines.setdefault((scenario, seed, threads), []).append((r, line))

    # Counters that must agree across languages and variants.
    for (scenario, seed, threads), group in sorted(lines.items(), key=lambda kv: str(kv[0])):
        for key in COMMON[scenario]:
            values = {rid["id"]: get(line, key) for rid, line in group}
            distinct = set(values.values())
            checker.expect(len(distinct) == 1 and None not in distinct,
                           f"{scenario} seed={seed} threads={threads}: {key} differs: {values}")
        # Growth steps follow each language's growth policy: equal within a language whatever the
        # allocator (the Rust arena's bumpalo::Vec has its own policy).
        if scenario == "growth":
            policies = {}
            for r, line in group:
                policy = (r["lang"], "arena" in r["variant"], r.get("toolchain") if r["lang"] == "go" else "")
                policies.setdefault(policy, set()).add((line["objects"], line["bytes_requested"]))
            for policy, seen in policies.items():
                checker.expect(len(seen) == 1, f"growth seed={seed} threads={threads}: {policy} differs: {seen}")

    # Unsupported scenarios and bad arguments: exit 2, nothing on stdout.
    for r in runnables:
        for scenario in scenarios:
            if scenario not in r["scenarios"]:
                code, out, _ = run(command(r, scenario, TINY[scenario], 1, 1), r["env"])
                checker.expect(code == 2 and out == "", f"{r['id']} {scenario}: unsupported but exit {code}, stdout {out!r}")
        for bad in (["no-such-scenario"], ["churn", "--size", "x"], ["churn", "--bogus"], ["churn", "--threads", "0"]):
            code, out, _ = run(r["command"][: r["command"].index("{scenario}")] + bad, r["env"])
            checker.expect(code == 2 and out == "", f"{r['id']} {bad}: exit {code}, stdout {out!r}")

    runs = len(jobs)
    print(f"checked {runs} runs of {len(runnables)} runnables x {len(scenarios)} scenarios")
    print(f"{checker.passed} passed, {len(checker.failures)} failed")
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
