"""Three allocating Python functions at known lines, reached through a small call chain.

Each makes N bytearrays of its own distinctive size (bytearray(n) allocates its buffer with
PyObject_Malloc(n + 1)) and keeps them, so the tracer must attribute exactly N allocations of
that size to each function's marked line. Prints its own counts as JSON on the first line.
"""

import json
import sys

N = 3000
# Buffer sizes (bytearray(n) asks the allocator for n + 1 bytes), distinct from anything the
# interpreter allocates by itself.
ALPHA, BETA, GAMMA = 4001, 4203, 4405

kept = []


def make_alpha(n):
    for _ in range(n):
        kept.append(bytearray(ALPHA))  # SITE_ALPHA


def make_beta(n):
    for _ in range(n):
        kept.append(bytearray(BETA))  # SITE_BETA


class Builder:
    def make_gamma(self, n):
        for _ in range(n):
            kept.append(bytearray(GAMMA))  # SITE_GAMMA


def run(n):
    make_alpha(n)  # CALL_ALPHA
    make_beta(n)
    Builder().make_gamma(n)


def main():
    run(N)
    print(json.dumps({"n": N, "sizes": [ALPHA + 1, BETA + 1, GAMMA + 1], "kept": len(kept)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
