// Every operator new/delete form a program can call, a known number of times, with object
// sizes libstdc++ and glibc do not use internally. Prints its own counters as one JSON line.
#include <cstdio>
#include <cstdlib>
#include <new>

struct Plain { char bytes[3001]; };
struct alignas(64) Aligned { char bytes[3008]; };

// Pointers escape through here so the compiler cannot elide a new/delete pair.
static void *volatile sink;

static unsigned long news, new_arrays, new_nothrow, new_aligned, deletes, delete_arrays;

int main(int argc, char **argv) {
    int rounds = argc > 1 ? std::atoi(argv[1]) : 100;
    for (int i = 0; i < rounds; i++) {
        Plain *p = new Plain; sink = p; news++;
        delete p; deletes++;
        char *a = new char[3003 + 2 * (i % 10)]; sink = a; new_arrays++;
        delete[] a; delete_arrays++;
        Plain *n = new (std::nothrow) Plain; sink = n; new_nothrow++;
        delete n; deletes++;
        Aligned *al = new Aligned; sink = al; new_aligned++;
        delete al; deletes++;
        Aligned *arr = new Aligned[2]; sink = arr; new_aligned++;
        delete[] arr; delete_arrays++;
    }
    std::printf("{\"new\":%lu,\"new_array\":%lu,\"new_nothrow\":%lu,\"new_aligned\":%lu,\"delete\":%lu,\"delete_array\":%lu}\n",
                news, new_arrays, new_nothrow, new_aligned, deletes, delete_arrays);
    return 0;
}
