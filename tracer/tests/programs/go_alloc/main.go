// Allocates known numbers of objects of distinctive sizes, on several goroutines and OS
// threads, forces and triggers GC cycles, and prints its own counters as one JSON line.
// Run with GODEBUG=gctrace=1 for the runtime's own account of every cycle. The sum of the
// addresses of each type's objects, as the program saw them, goes to stderr (it differs
// between runs), so a trace's addresses can be checked too.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"unsafe"
)

// Blob is pointer-free and 3001 bytes: a size no runtime-internal allocation uses.
type Blob [3001]byte

// Node has pointers (a scanned object) and is 312 bytes.
type Node struct {
	Left, Right *Node
	Values      [37]int64
}

// Pair has pointers and is 24 bytes: Go 1.27 allocates it in a size-specialised function
// (mallocgcSmallScanNoHeaderSC2), which takes its slow path while the GC marks.
type Pair struct {
	A, B *Pair
	N    int64
}

// Tiny is pointer-free and 5 bytes: the tiny allocator (mallocgcTinySC2 in Go 1.27).
type Tiny [5]byte

var keep []interface{}
var mu sync.Mutex

// addrSums is the sum of the addresses of every object of each type.
var addrSums = map[string]uint64{}

func addr[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p))) }

func work(blobs, nodes, pairs, tinies int, wg *sync.WaitGroup) {
	defer wg.Done()
	local := make([]interface{}, 0, blobs+nodes+pairs+tinies)
	var sums [4]uint64
	for i := 0; i < blobs; i++ {
		b := new(Blob)
		sums[0] += addr(b)
		local = append(local, b)
	}
	var prev *Node
	for i := 0; i < nodes; i++ {
		n := &Node{Left: prev}
		sums[1] += addr(n)
		prev = n
		local = append(local, n)
	}
	var last *Pair
	for i := 0; i < pairs; i++ {
		p := &Pair{A: last, N: int64(i)}
		sums[2] += addr(p)
		last = p
		local = append(local, p)
	}
	for i := 0; i < tinies; i++ {
		t := new(Tiny)
		t[0] = byte(i)
		sums[3] += addr(t)
		local = append(local, t)
	}
	mu.Lock()
	keep = append(keep, local...)
	for i, name := range []string{"main.Blob", "main.Node", "main.Pair", "main.Tiny"} {
		addrSums[name] += sums[i]
	}
	mu.Unlock()
}

func main() {
	runtime.GOMAXPROCS(2)
	const goroutines, blobs, nodes, pairs, tinies = 4, 1500, 2500, 20000, 20000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go work(blobs, nodes, pairs, tinies, &wg)
	}
	wg.Wait()
	// Garbage for the collector to find, then explicit cycles.
	for i := 0; i < 200; i++ {
		_ = make([]byte, 64<<10)
	}
	runtime.GC()
	keep = keep[:len(keep)/2]
	runtime.GC()
	// Return the freed spans to the OS now (a forced cycle, then a full scavenge), so the
	// background scavenger has nothing left to release; then a last cycle with no new garbage:
	// its end sees the heap as ReadMemStats does after it.
	debug.FreeOSMemory()
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	// stdout is deterministic (a test compares it with an untraced run); the GC count, which
	// depends on timing, goes to stderr next to gctrace's lines.
	out, _ := json.Marshal(map[string]interface{}{
		"blobs": goroutines * blobs, "blob_size": 3001,
		"nodes": goroutines * nodes, "node_size": 312,
		"pairs": goroutines * pairs, "pair_size": 24,
		"tinies": goroutines * tinies, "tiny_size": 5,
		"kept": len(keep),
	})
	fmt.Println(string(out))
	fmt.Fprintf(os.Stderr, "numgc %d\n", stats.NumGC)
	sums, _ := json.Marshal(addrSums)
	fmt.Fprintf(os.Stderr, "addresses %s\n", sums)
	fmt.Fprintf(os.Stderr, "memstats heap_inuse=%d heap_idle=%d heap_released=%d stack_inuse=%d gc_cpu_fraction=%.6f\n",
		stats.HeapInuse, stats.HeapIdle, stats.HeapReleased, stats.StackInuse, stats.GCCPUFraction)
	os.Exit(4)
}
