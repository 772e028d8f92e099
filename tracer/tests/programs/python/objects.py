"""Creates known numbers of objects of distinctive sizes, then prints its own counters and
gc.get_stats() as one JSON line, then makes one marker allocation (so a trace can tell the
collections before the print from those at interpreter shutdown), and exits with status 3."""
import gc
import json
import sys

N_BIG, N_TUPLE = 1234, 2345
# Markers of unique sizes bracket each phase, so the trace can count what the phase made.
begin = bytes(7001)
big = [bytes(3001) for _ in range(N_BIG)]          # > 512 bytes: pymalloc passes them to libc
tuples = [tuple(range(i, i + 41)) for i in range(N_TUPLE)]  # 41 items: no tuple free list
end = bytes(7003)
cycles = []
for i in range(3000):                               # garbage cycles for the collector
    a = []
    a.append(a)
gc.collect(0)
gc.collect(1)
gc.collect()
print(json.dumps({
    "big": N_BIG, "big_size": sys.getsizeof(big[0]),
    "tuple": N_TUPLE, "tuple_size": sys.getsizeof(tuples[0]),
    "gc": gc.get_stats(),
}), flush=True)
marker = bytes(7777)
sys.exit(3)
