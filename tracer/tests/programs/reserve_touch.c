// Reserves 1 GiB of address space with MAP_NORESERVE, touches 8 MiB of it, holds it a moment
// and prints its own peak resident set (VmHWM) as a JSON line: the oracle of the
// resident-memory sampler. Usage: reserve_touch [hold_ms]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static long vm_hwm_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    long hold_ms = argc > 1 ? atol(argv[1]) : 200;
    size_t reserve = 1ul << 30, touch = 8ul << 20;
    char *p = mmap(NULL, reserve, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    memset(p, 1, touch);
    // Stay at the peak for a while: the sampler must see it, not just the kernel.
    struct timespec until, now;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (hold_ms % 1000) * 1000000;
    until.tv_sec += hold_ms / 1000 + until.tv_nsec / 1000000000;
    until.tv_nsec %= 1000000000;
    do
        clock_gettime(CLOCK_MONOTONIC, &now);
    while (now.tv_sec < until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec < until.tv_nsec));
    printf("{\"vm_hwm_bytes\": %ld, \"reserved\": %zu, \"touched\": %zu}\n", vm_hwm_kb() * 1024,
           reserve, touch);
    munmap(p, reserve);
    return 0;
}
