// One process of a process-tree test: makes `count` malloc calls of `size` bytes (each freed)
// and prints its own pid and counts as one JSON line, the oracle for the trace.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: marked SIZE COUNT\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10);
    long count = strtol(argv[2], NULL, 10);
    for (long i = 0; i < count; i++) {
        volatile char *p = malloc(size);
        p[0] = 1;
        free((void *)p);
    }
    printf("{\"pid\": %d, \"size\": %zu, \"count\": %ld}\n", getpid(), size, count);
    fflush(stdout);
    return 0;
}
