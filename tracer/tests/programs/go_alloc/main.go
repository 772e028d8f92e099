// Allocates known numbers of objects of distinctive sizes, on several goroutines and OS
// threads, forces and triggers GC cycles, and prints its own counters as one JSON line.
// Run with GODEBUG=gctrace=1 for the runtime's own account of every cycle.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
)

// Blob is pointer-free and 3001 bytes: a size no runtime-internal allocation uses.
type Blob [3001]byte

// Node has pointers (a scanned object) and is 312 bytes.
type Node struct {
	Left, Right *Node
	Values      [37]int64
}

var keep []interface{}
var mu sync.Mutex

func work(blobs, nodes int, wg *sync.WaitGroup) {
	defer wg.Done()
	local := make([]interface{}, 0, blobs+nodes)
	for i := 0; i < blobs; i++ {
		local = append(local, new(Blob))
	}
	var prev *Node
	for i := 0; i < nodes; i++ {
		n := &Node{Left: prev}
		prev = n
		local = append(local, n)
	}
	mu.Lock()
	keep = append(keep, local...)
	mu.Unlock()
}

func main() {
	runtime.GOMAXPROCS(2)
	const goroutines, blobs, nodes = 4, 1500, 2500
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go work(blobs, nodes, &wg)
	}
	wg.Wait()
	// Garbage for the collector to find, then explicit cycles.
	for i := 0; i < 200; i++ {
		_ = make([]byte, 64<<10)
	}
	runtime.GC()
	keep = keep[:len(keep)/2]
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	// stdout is deterministic (a test compares it with an untraced run); the GC count, which
	// depends on timing, goes to stderr next to gctrace's lines.
	out, _ := json.Marshal(map[string]interface{}{
		"blobs": goroutines * blobs, "blob_size": 3001,
		"nodes": goroutines * nodes, "node_size": 312,
		"kept": len(keep),
	})
	fmt.Println(string(out))
	fmt.Fprintf(os.Stderr, "numgc %d\n", stats.NumGC)
	os.Exit(4)
}
