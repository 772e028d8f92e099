// Three allocating call paths, each through its own functions, for the symbolization tests:
// main → run_alpha → make_alpha → malloc, and the same for beta and gamma. Each path moves a
// different number of bytes (alpha > beta > gamma), so the call sites rank in a known order.
// Every allocating line carries a SITE_ marker the test looks up to know its line number.
// Pointers go through a volatile sink so GCC keeps every allocation (see README-devel.md).
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline, noclone))

static void *volatile sink;
static void *kept[4096];
static size_t nkept;

NOINLINE void *make_alpha(size_t n) {
    void *p = malloc(n); /* SITE_ALPHA */
    sink = p;
    return p;
}

NOINLINE void *make_beta(size_t n) {
    void *p = calloc(1, n); /* SITE_BETA */
    sink = p;
    return p;
}

NOINLINE void *make_gamma(size_t n) {
    void *p = malloc(n); /* SITE_GAMMA */
    sink = p;
    return p;
}

// Temporary blocks: allocated and freed at once.
NOINLINE void run_alpha(int rounds, size_t n) {
    for (int i = 0; i < rounds; i++)
        free(make_alpha(n));
}

// Kept until the end: live at the peak and at the end.
NOINLINE void run_beta(int rounds, size_t n) {
    for (int i = 0; i < rounds && nkept < 4096; i++)
        kept[nkept++] = make_beta(n);
}

// Half kept, half freed.
NOINLINE void run_gamma(int rounds, size_t n) {
    for (int i = 0; i < rounds; i++) {
        void *p = make_gamma(n);
        if (i % 2 == 0 && nkept < 4096)
            kept[nkept++] = p;
        else
            free(p);
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    // Sizes from the command line's length, so the compiler cannot fold them.
    size_t unit = 1000 + (size_t)argc;
    run_alpha(rounds * 4, unit * 4);
    run_beta(rounds, unit * 2);
    run_gamma(rounds, unit);
    printf("{\"rounds\":%d,\"unit\":%zu}\n", rounds, unit);
    return 0;
}
