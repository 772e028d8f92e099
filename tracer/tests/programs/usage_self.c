// malloc/free pairs (each a probe hit when traced), then the program's own CPU time and peak
// RSS as the kernel reports them to it (getrusage), for comparison with what the tracer records.
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static void *volatile sink;

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    for (long i = 0; i < n; i++) {
        sink = malloc(16 + (i & 255));
        free(sink);
    }
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    long cpu_us = (self.ru_utime.tv_sec + self.ru_stime.tv_sec) * 1000000L +
                  self.ru_utime.tv_usec + self.ru_stime.tv_usec;
    printf("{\"pairs\":%ld,\"cpu_us\":%ld,\"maxrss_kib\":%ld}\n", n, cpu_us, self.ru_maxrss);
    return 0;
}
