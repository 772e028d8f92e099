#!/usr/bin/env python3
"""The alloctrace workload targets in Python (standard library only, CPython 3.11).

    alloc_targets.py <scenario> [--size N] [--seed S] [--threads T] [--variant slots]
    alloc_targets.py --list [--variant slots]

targets/README.md specifies the scenarios; the Rust, Go and C++ targets implement the same ones
with the same PRNG draws. The allocator is chosen by the environment (PYTHONMALLOC=malloc or the
default pymalloc) and recorded in the JSON line that is printed on stdout at exit.

Data objects are `bytes` (one allocation of sys.getsizeof(b) = len + 33 bytes each) and, in
binary-trees, instances of a small class (one allocation of sys.getsizeof(node) bytes; without
__slots__ CPython 3.11 allocates the instance's attribute-values array separately as well).
"""

import json
import os
import platform
import queue
import sys
import threading
import time
from collections import OrderedDict

# Default sizes: each run takes about 1-5 s on the project's machine.
SCENARIOS = {
    "binary-trees": 15,
    "churn": 1_000_000,
    "fragmentation": 1_500_000,
    "growth": 1_500,
    "producer-consumer": 600_000,
    "cache": 1_200_000,
}
SLOTS_SCENARIOS = ("binary-trees",)  # the only scenario whose objects are class instances

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

# One-byte bytes objects; FILLS[b] * n is a single allocation of n + 33 bytes.
FILLS = [bytes((i,)) for i in range(256)]
BYTES_OVERHEAD = sys.getsizeof(b"xy") - 2  # 33: PyBytesObject header + NUL


class Rng:
    """splitmix64, identical to the other languages' (Python ints: mask to 64 bits)."""

    __slots__ = ("state", "draws")

    def __init__(self, seed):
        self.state = seed & MASK64
        self.draws = 0

    def next_u64(self):
        self.draws += 1
        self.state = z = (self.state + GAMMA) & MASK64
        z = ((z ^ (z >> 30)) * MIX1) & MASK64
        z = ((z ^ (z >> 27)) * MIX2) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        return self.next_u64() % n


def worker_seeds(seed, threads):
    root = Rng(seed)
    return [root.next_u64() for _ in range(threads)]


def share(total, parts, index):
    return total // parts + (1 if index < total % parts else 0)


def fill_byte(index):
    return 1 + index % 255


def mixed_size(rng):
    cls = rng.below(1000)
    if cls < 600:
        return 16 + rng.below(112)
    if cls < 900:
        return 128 + rng.below(896)
    if cls < 990:
        return 1024 + rng.below(7168)
    if cls < 999:
        return 8192 + rng.below(57344)
    return 65536 + rng.below(196608)


class Tally:
    __slots__ = ("work", "objects", "bytes", "payload", "checksum", "draws")

    def __init__(self):
        self.work = self.objects = self.bytes = self.payload = self.checksum = self.draws = 0

    def add_bytes_object(self, buf):
        """Counts one bytes object: requested = its allocation, payload = its length."""
        self.objects += 1
        self.bytes += len(buf) + BYTES_OVERHEAD
        self.payload += len(buf)

    def touch(self, buf):
        self.checksum += buf[0] + buf[-1]

    @staticmethod
    def sum(tallies):
        total = Tally()
        for t in tallies:
            for name in Tally.__slots__:
                setattr(total, name, getattr(total, name) + getattr(t, name))
        return total

    def report(self):
        return {
            "work_units": self.work,
            "objects": self.objects,
            "bytes_requested": self.bytes,
            "extra": {"payload_bytes": self.payload, "checksum": self.checksum, "rng_draws": self.draws},
        }


def parallel(config, worker):
    """Runs worker(count, seed) for each worker (inline when there is one); returns the results
    in worker order."""
    seeds = worker_seeds(config.seed, config.threads)
    counts = [share(config.size, config.threads, i) for i in range(config.threads)]
    if config.threads == 1:
        return [worker(counts[0], seeds[0])]
    results = [None] * config.threads

    def run(i):
        results[i] = worker(counts[i], seeds[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(config.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- binary-trees ---------------------------------------------------------------------------

MIN_DEPTH = 4


class Node:
    def __init__(self, left, right):
        self.left = left
        self.right = right


class SlotNode:
    __slots__ = ("left", "right")

    def __init__(self, left, right):
        self.left = left
        self.right = right


def bottom_up(cls, depth):
    """A complete tree: 2**(depth+1) - 1 instances of cls, children before their parent."""
    if depth == 0:
        return cls(None, None)
    depth -= 1
    return cls(bottom_up(cls, depth), bottom_up(cls, depth))


def check(node):
    if node.left is None:
        return 1
    return 1 + check(node.left) + check(node.right)


# Two bytes objects of sizes nothing else uses bracket the tree building, so a trace can count
# exactly the allocations it made (tracer/tests/suite/targets.rs). Not counted as objects.
PHASE_BEGIN, PHASE_END = 7001, 7003


def binary_trees(config):
    cls = SlotNode if config.slots else Node
    markers = []  # a list is node-sized (56 bytes): made before the window opens
    begin = bytes(PHASE_BEGIN)
    max_depth = max(MIN_DEPTH + 2, config.size)
    nodes = check(bottom_up(cls, max_depth + 1))  # stretch tree, freed at once
    long_lived = bottom_up(cls, max_depth)
    threads = config.threads

    def worker(index):
        trees = built = 0
        for depth in range(MIN_DEPTH, max_depth + 1, 2):
            iterations = 1 << (max_depth - depth + MIN_DEPTH)
            for _ in range(share(iterations, threads, index)):
                built += check(bottom_up(cls, depth))
                trees += 1
        if threads == 1:
            # Before the (56-byte) result tuple, which is node-sized.
            markers.append(bytes(PHASE_END))
        return trees, built

    if threads == 1:
        results = [worker(0)]
    else:
        results = [None] * threads

        def run(i):
            results[i] = worker(i)

        pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    trees = 2 + sum(r[0] for r in results)
    nodes += sum(r[1] for r in results)
    long_lived_check = check(long_lived)
    nodes += long_lived_check
    del long_lived
    if threads != 1:
        markers.append(bytes(PHASE_END))
    del begin, markers
    node_size = sys.getsizeof(cls(None, None))
    return {
        "work_units": trees,
        "objects": nodes,
        "bytes_requested": nodes * node_size,
        "extra": {
            "max_depth": max_depth,
            "trees": trees,
            "node_size": node_size,
            "long_lived_check": long_lived_check,
        },
    }


# --- churn ----------------------------------------------------------------------------------

CHURN_ROUND = 4096
CHURN_SLOTS = 256


def churn_worker(count, seed):
    rng = Rng(seed)
    t = Tally()
    while t.objects < count:
        rnd = min(CHURN_ROUND, count - t.objects)
        slots = [None] * CHURN_SLOTS
        for _ in range(rnd):
            size = mixed_size(rng)
            slot = rng.below(CHURN_SLOTS)
            buf = FILLS[fill_byte(t.objects)] * size
            t.add_bytes_object(buf)
            t.touch(buf)
            slots[slot] = buf  # frees the slot's previous object
        buf = slots = None  # frees the round's survivors
    t.work = count
    t.draws = rng.draws
    return t


def churn(config):
    return Tally.sum(parallel(config, churn_worker)).report()


# --- fragmentation --------------------------------------------------------------------------

FRAG_ROUND = 16384


def fragmentation_worker(count, seed):
    rng = Rng(seed)
    t = Tally()
    done = 0
    while done < count:
        rnd = min(FRAG_ROUND, count - done)
        small = [None] * rnd
        for i in range(rnd):
            size = 16 + rng.below(113)
            small[i] = buf = FILLS[fill_byte(t.objects)] * size
            t.add_bytes_object(buf)
        for i in range(1, rnd, 2):
            small[i] = None  # frees every other small object
        large = [None] * (rnd // 2)
        for i in range(rnd // 2):
            size = 256 + rng.below(769)
            large[i] = buf = FILLS[fill_byte(t.objects)] * size
            t.add_bytes_object(buf)
        buf = None
        for i in range(0, rnd, 2):
            t.touch(small[i])
        for b in large:
            t.touch(b)
        b = small = large = None  # frees the round's survivors
        done += rnd
    t.work = count
    t.draws = rng.draws
    return t


def fragmentation(config):
    t = Tally.sum(parallel(config, fragmentation_worker))
    out = t.report()
    out["extra"]["small_objects"] = t.work
    out["extra"]["large_objects"] = t.objects - t.work
    return out


# --- growth ---------------------------------------------------------------------------------

GROWTH_GROUP = 8
EMPTY_LIST_SIZE = sys.getsizeof([])
POINTER_SIZE = 8


def target_len(rng):
    if rng.below(100) < 90:
        return 1 + rng.below(1000)
    return 1 + rng.below(100_000)


def growth_worker(count, seed):
    """A growth step is an append that finds the list full: list_resize reallocates its item
    array to sys.getsizeof(lst) - sys.getsizeof([]) bytes."""
    rng = Rng(seed)
    t = Tally()
    vecs = [[] for _ in range(GROWTH_GROUP)]
    caps = [0] * GROWTH_GROUP
    getsizeof = sys.getsizeof
    done = 0
    while done < count:
        k = min(GROWTH_GROUP, count - done)
        lens = [target_len(rng) for _ in range(k)]
        for j in range(max(lens)):
            value = j & 0xFF  # small ints are preallocated: appending allocates nothing else
            for i in range(k):
                if j < lens[i]:
                    lst = vecs[i]
                    lst.append(value)
                    if len(lst) > caps[i]:
                        grown = getsizeof(lst) - EMPTY_LIST_SIZE
                        caps[i] = grown // POINTER_SIZE
                        t.objects += 1
                        t.bytes += grown
        for i in range(k):
            lst = vecs[i]
            t.checksum += sum(lst)
            t.work += len(lst)
            lst.clear()  # frees the item array; the next group starts from nothing
            caps[i] = 0
        done += k
    t.payload = t.work * 8
    t.draws = rng.draws
    return t


def growth(config):
    t = Tally.sum(parallel(config, growth_worker))
    return {
        "work_units": t.work,
        "objects": t.objects,
        "bytes_requested": t.bytes,
        "extra": {
            "vectors": config.size,
            "elements": t.work,
            "payload_bytes": t.payload,
            "checksum": t.checksum,
            "rng_draws": t.draws,
        },
    }


# --- producer-consumer ----------------------------------------------------------------------

PC_QUEUE = 256


def produce(count, seed, q, t):
    rng = Rng(seed)
    for _ in range(count):
        size = 16 + rng.below(4081)
        buf = FILLS[fill_byte(t.objects)] * size
        t.add_bytes_object(buf)
        q.put(buf)
        buf = None  # the queue holds the only reference now
    q.put(None)
    t.work = count
    t.draws = rng.draws


def consume(q, t):
    while True:
        buf = q.get()
        if buf is None:
            return
        t.touch(buf)
        buf = None  # freed here, on the consumer's thread


def producer_consumer(config):
    seeds = worker_seeds(config.seed, config.threads)
    tallies, threads = [], []
    for i, seed in enumerate(seeds):
        q = queue.Queue(PC_QUEUE)
        p, c = Tally(), Tally()
        tallies += [p, c]
        count = share(config.size, config.threads, i)
        threads.append(threading.Thread(target=produce, args=(count, seed, q, p)))
        threads.append(threading.Thread(target=consume, args=(q, c)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = Tally.sum(tallies).report()
    out["extra"]["pairs"] = config.threads
    out["extra"]["queue_capacity"] = PC_QUEUE
    return out


# --- cache ----------------------------------------------------------------------------------

CACHE_CAPACITY = 4096
CACHE_KEYS = 16384


def cache_worker(count, seed):
    """An OrderedDict as the LRU: most recent at the end."""
    rng = Rng(seed)
    t = Tally()
    lru = OrderedDict()
    hits = evictions = 0
    for _ in range(count):
        key = rng.below(1 + rng.below(CACHE_KEYS))
        value = lru.get(key)
        if value is not None:
            lru.move_to_end(key)
            t.touch(value)
            hits += 1
            continue
        size = 16 + rng.below(1009)
        value = FILLS[fill_byte(t.objects)] * size
        t.add_bytes_object(value)
        t.touch(value)
        lru[key] = value
        if len(lru) > CACHE_CAPACITY:
            lru.popitem(last=False)  # frees the least recent value
            evictions += 1
    value = lru = None
    t.work = count
    t.draws = rng.draws
    return t, hits, evictions


def cache(config):
    results = parallel(config, cache_worker)
    t = Tally.sum(r[0] for r in results)
    out = t.report()
    out["extra"].update(
        capacity=CACHE_CAPACITY,
        hits=sum(r[1] for r in results),
        misses=t.objects,
        evictions=sum(r[2] for r in results),
    )
    return out


# --- command line ---------------------------------------------------------------------------

RUNNERS = {
    "binary-trees": binary_trees,
    "churn": churn,
    "fragmentation": fragmentation,
    "growth": growth,
    "producer-consumer": producer_consumer,
    "cache": cache,
}


class Config:
    def __init__(self):
        self.scenario = None
        self.size = None
        self.seed = 1
        self.threads = 1
        self.slots = False
        self.list = False


class UsageError(Exception):
    pass


def parse_args(argv):
    config = Config()
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")

        def value():
            if inline:
                return inline
            if not args:
                raise UsageError(f"{flag} needs a value")
            return args.pop(0)

        def number():
            v = value()
            if not v.isdigit():
                raise UsageError(f"{flag}: not a number: {v}")
            return int(v)

        if flag == "--size":
            config.size = number()
        elif flag == "--seed":
            config.seed = number()
        elif flag == "--threads":
            config.threads = number()
        elif flag == "--variant":
            v = value()
            if v == "slots":
                config.slots = True
            elif v not in ("default", "objects"):
                raise UsageError(f"unknown variant {v!r} (known: slots)")
        elif flag == "--list":
            config.list = True
        elif flag in ("-h", "--help"):
            raise UsageError("")
        elif flag.startswith("-"):
            raise UsageError(f"unknown option {flag}")
        elif config.scenario is None:
            config.scenario = flag
        else:
            raise UsageError(f"unexpected argument {flag}")
    if config.list:
        return config
    if config.scenario is None:
        raise UsageError("no scenario given")
    if config.scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {config.scenario!r}")
    if config.threads < 1:
        raise UsageError("--threads must be at least 1")
    if config.slots and config.scenario not in SLOTS_SCENARIOS:
        raise UsageError(f"scenario {config.scenario} is not changed by the slots variant")
    if config.size is None:
        config.size = SCENARIOS[config.scenario]
    return config


def variant_name(slots):
    allocator = os.environ.get("PYTHONMALLOC") or "pymalloc"
    return f"{allocator}+slots" if slots else allocator


def main(argv):
    try:
        config = parse_args(argv)
    except UsageError as e:
        if str(e):
            print(f"error: {e}", file=sys.stderr)
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        print("scenarios: " + ", ".join(SCENARIOS), file=sys.stderr)
        return 2
    toolchain = platform.python_version()
    if config.list:
        names = [s for s in SCENARIOS if not config.slots or s in SLOTS_SCENARIOS]
        line = {
            "lang": "python",
            "variant": variant_name(config.slots),
            "toolchain": toolchain,
            "scenarios": names,
            "default_sizes": {s: SCENARIOS[s] for s in names},
        }
        print(json.dumps(line, separators=(",", ":")))
        return 0
    start = time.perf_counter()
    result = RUNNERS[config.scenario](config)
    elapsed_ms = round((time.perf_counter() - start) * 1000, 1)
    line = {
        "lang": "python",
        "variant": variant_name(config.slots),
        "toolchain": toolchain,
        "scenario": config.scenario,
        "size": config.size,
        "seed": config.seed,
        "threads": config.threads,
        "work_units": result["work_units"],
        "objects": result["objects"],
        "bytes_requested": result["bytes_requested"],
        "elapsed_ms": elapsed_ms,
        "extra": result["extra"],
    }
    print(json.dumps(line, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
