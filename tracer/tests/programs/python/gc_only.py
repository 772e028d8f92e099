# Makes garbage cycles so the collector runs on its own, collects explicitly too, then prints
# the collections per generation (gc.get_stats(), cumulative since the interpreter started) and
# leaves with os._exit so that no collection runs after the print (finalization collects
# again). The oracle of `record --events gc,rss` on CPython.
import gc
import json
import os
import sys


class Node:
    def __init__(self):
        self.me = self
        self.payload = [0] * 8


def churn(n):
    for _ in range(n):
        Node()


churn(200_000)
for generation in (0, 1, 2, 0, 2):
    gc.collect(generation)
churn(100_000)
stats = [s["collections"] for s in gc.get_stats()]
sys.stdout.write(json.dumps({"collections": stats}) + "\n")
sys.stdout.flush()
os._exit(0)
