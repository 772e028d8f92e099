// Waits on stdin, so a tracer can attach first; then each line "go N" makes N malloc/free pairs
// of a distinctive size on each of two threads, and "quit" exits. Prints "ready" and
// "done N" as handshakes.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int per_thread;

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < per_thread; i++) {
        // One pointer per thread: a shared one let a thread free the other's block (glibc
        // aborted with "double free or corruption" when the two interleaved).
        void *volatile block = malloc(4321);
        free(block);
    }
    return NULL;
}

int main(void) {
    char line[64];
    printf("ready\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "go ", 3) == 0) {
            per_thread = atoi(line + 3);
            pthread_t a, b;
            pthread_create(&a, NULL, work, NULL);
            pthread_create(&b, NULL, work, NULL);
            pthread_join(a, NULL);
            pthread_join(b, NULL);
            printf("done %d\n", 2 * per_thread);
            fflush(stdout);
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
