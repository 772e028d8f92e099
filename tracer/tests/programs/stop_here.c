// Makes N malloc/free pairs of a distinctive size, says "ready" on stdout, then blocks until a
// signal arrives (or crashes on purpose with `crash`). Used to stop or lose the tracer at a
// known point: every one of the N pairs happened before the stop.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile sink;

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int crash = argc > 2 && strcmp(argv[2], "crash") == 0;
    for (int i = 0; i < n; i++) {
        sink = malloc(3333);
        free(sink);
    }
    printf("ready %d\n", n);
    fflush(stdout);
    if (crash) {
        *(volatile int *)0 = 1;
    }
    for (;;) pause();
}
