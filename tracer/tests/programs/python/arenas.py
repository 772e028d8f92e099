"""Makes pymalloc take and give back arenas: fills many with small tuples, frees most of them,
prints CPython's own arena counters (sys._debugmallocstats() on stderr) and then makes one
marker allocation of a unique size, so a trace can count the arenas before the print."""
import gc
import sys

kept = [(i,) for i in range(300000)]   # 32-byte blocks: tens of 1 MiB arenas
del kept                                # most arenas empty again: pymalloc unmaps them
gc.collect()
sys._debugmallocstats()
sys.stderr.flush()
marker = bytes(7777)
