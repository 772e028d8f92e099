// Calls every glibc allocator entry point a known number of times with sizes no libc-internal
// allocation uses (3001..3999, odd), from two threads, with frees on the other thread. Prints
// its own counters as one JSON line: the oracle for the tracer's rows.
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MALLOC, CALLOC, REALLOC, REALLOCARRAY, POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN, VALLOC, PVALLOC, FREE, NFUNC };
static const char *names[NFUNC] = {"malloc", "calloc", "realloc", "reallocarray", "posix_memalign",
                                   "aligned_alloc", "memalign", "valloc", "pvalloc", "free"};
static unsigned long calls[NFUNC], bytes[NFUNC];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void count(int f, unsigned long size) {
    pthread_mutex_lock(&lock);
    calls[f]++;
    bytes[f] += size;
    pthread_mutex_unlock(&lock);
}

// A pipe carries pointers from the allocating thread to the freeing thread.
static int fds[2];

static void handoff(void *p) {
    if (write(fds[1], &p, sizeof p) != sizeof p) abort();
}

static void *freer(void *arg) {
    (void)arg;
    void *p;
    while (read(fds[0], &p, sizeof p) == sizeof p && p) {
        count(FREE, 0);
        free(p);
    }
    return NULL;
}

// Every pointer is stored here before it is freed, so the compiler cannot elide an
// allocation/free pair (GCC does that for unused blocks at -O2).
static void *volatile sink;
// GCC folds a literal realloc(NULL, n) into malloc(n); a volatile NULL keeps the call.
static void *volatile null_ptr = NULL;

static void round_of_calls(int i, int cross_thread) {
    unsigned long s = 3001 + 2 * (i % 400);
    void *p;
#define DONE(ptr) do { sink = (ptr); if (cross_thread) handoff(ptr); else { count(FREE, 0); free(ptr); } } while (0)
    p = malloc(s); count(MALLOC, s); DONE(p);
    p = calloc(3, s); count(CALLOC, 3 * s); DONE(p);
    p = malloc(s); count(MALLOC, s);
    p = realloc(p, s + 2000); count(REALLOC, s + 2000);       // grow
    p = realloc(p, s); count(REALLOC, s);                     // shrink
    DONE(p);
    p = realloc(null_ptr, s); count(REALLOC, s); DONE(p);     // realloc(NULL, n) allocates
    p = malloc(s); count(MALLOC, s);
    p = realloc(p, 0); count(REALLOC, 0);                     // realloc(p, 0) frees p
    sink = p;
    p = reallocarray(NULL, 5, s); count(REALLOCARRAY, 5 * s); DONE(p);
    if (posix_memalign(&p, 64, s) != 0) abort();
    count(POSIX_MEMALIGN, s); DONE(p);
    p = aligned_alloc(128, s + 127 - (s + 127) % 128); count(ALIGNED_ALLOC, s + 127 - (s + 127) % 128); DONE(p);
    p = memalign(256, s); count(MEMALIGN, s); DONE(p);
    p = valloc(s); count(VALLOC, s); DONE(p);
    p = pvalloc(s); count(PVALLOC, s); DONE(p);
    free(null_ptr); // a no-op: not a row (volatile, or GCC removes the call)
#undef DONE
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    if (pipe(fds) != 0) return 1;
    pthread_t t;
    if (pthread_create(&t, NULL, freer, NULL) != 0) return 1;
    for (int i = 0; i < rounds; i++) round_of_calls(i, i % 2);
    handoff(NULL);
    pthread_join(t, NULL);
    printf("{\"same_address_aligned_alloc_memalign\":%s", (void *)aligned_alloc == (void *)memalign ? "true" : "false");
    for (int f = 0; f < NFUNC; f++) printf(",\"%s\":[%lu,%lu]", names[f], calls[f], bytes[f]);
    printf("}\n");
    return 0;
}
