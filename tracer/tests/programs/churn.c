// malloc/free churn for the benchmark: N pairs of small blocks, timed by the program itself.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        sink = malloc(16 + (i & 255));
        free(sink);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("{\"pairs\":%ld,\"ns_per_pair\":%.1f}\n", n, ns / n);
    return 0;
}
