// Test program for alloctrace's Go binary introspection (tracer/src/golang).
//
// "types" prints, for a few values, the raw runtime type pointer the compiler passes to the
// allocator (the first word of an interface holding the value) and reflect's name for it:
//
//	TYPE 0x4b2c40 main.Node
//
// and where its own file is mapped at offset 0 ("BASE 0x55d0c0000000"), from which a test
// computes the load bias of a position-independent build.
//
// "layout NUMGC HEAPMARKED GOAL" (three hex addresses, as found by the introspection module)
// forces a few GC cycles with GODEBUG=gctrace=1 and prints what it reads at those addresses,
// so the test can compare them with runtime.MemStats and the gctrace lines on stderr:
//
//	LAYOUT numgc=3 memstats_numgc=3 heap_marked=123456 goal=4194304
//
// "stats ADDR/SIZE..." forces a few GC cycles, reads runtime.MemStats and right after it the
// SIZE-byte (4 or 8) signed integers at those addresses, and prints both:
//
//	STATS values=1,2,3 heap_inuse=4 heap_idle=5 heap_released=6 stack_inuse=7 gc_cpu_fraction=0.01 numgc=3
//
// "count" runs one GC, then allocates a mix of objects of every allocator path (tiny, small
// without and with pointers, with a malloc header, large) between calls of windowStart and
// windowEnd (a debugger counts allocator entries between them), then two more GCs, and prints
// how many objects runtime.MemStats says were allocated in the window and the GC count:
//
//	COUNT mallocs=1234 numgc=3
package main

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"unsafe"
)

type Node struct {
	Left, Right *Node
	Value       int
}

type Plain struct {
	A, B int64
	Name string
}

type Small struct{ X int32 }

type Celsius float64

var sink []any

// typeWord returns the type pointer held in an empty interface.
func typeWord(v any) uintptr {
	return (*[2]uintptr)(unsafe.Pointer(&v))[0]
}

func types() {
	values := []any{
		Node{},
		&Node{},
		Plain{},
		&Plain{},
		Small{},
		[]byte{1, 2, 3},
		[]*Node{},
		map[string]int{"a": 1},
		[4]int32{},
		"text",
		Celsius(1.5),
		make(chan Plain),
		func(int) string { return "" },
		struct {
			P *int
			Q string
		}{},
		[]map[int]*Plain{},
	}
	for _, v := range values {
		fmt.Printf("TYPE %#x %s\n", typeWord(v), reflect.TypeOf(v).String())
	}
	printBase()
}

// printBase prints the start of the first mapping of the executable at file offset 0.
func printBase() {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "executable:", err)
		os.Exit(1)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		fmt.Fprintln(os.Stderr, "maps:", err)
		os.Exit(1)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 6 && fields[5] == exe && fields[2] == "00000000" {
			start := strings.SplitN(fields[0], "-", 2)[0]
			fmt.Printf("BASE 0x%s\n", start)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "no mapping of", exe)
	os.Exit(1)
}

func parseAddr(s string) uintptr {
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad address", s, err)
		os.Exit(2)
	}
	return uintptr(v)
}

func layout(numgcAddr, heapMarkedAddr, goalAddr uintptr) {
	for i := 0; i < 3; i++ {
		for j := 0; j < 2000; j++ {
			sink = append(sink, &Node{Value: j}, make([]byte, 512))
		}
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	numgc := *(*uint32)(unsafe.Pointer(numgcAddr))
	heapMarked := *(*uint64)(unsafe.Pointer(heapMarkedAddr))
	goal := *(*uint64)(unsafe.Pointer(goalAddr))
	fmt.Printf("LAYOUT numgc=%d memstats_numgc=%d heap_marked=%d goal=%d\n", numgc, ms.NumGC, heapMarked, goal)
	runtime.KeepAlive(sink)
}

func stats(args []string) {
	addrs := make([]uintptr, len(args))
	sizes := make([]string, len(args))
	for i, a := range args {
		parts := strings.SplitN(a, "/", 2)
		if len(parts) != 2 {
			fmt.Fprintln(os.Stderr, "want ADDR/SIZE, got", a)
			os.Exit(2)
		}
		addrs[i], sizes[i] = parseAddr(parts[0]), parts[1]
	}
	for i := 0; i < 3; i++ {
		for j := 0; j < 2000; j++ {
			sink = append(sink, &Node{Value: j}, make([]byte, 512))
		}
		runtime.GC()
	}
	values := make([]int64, len(args))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// Nothing is allocated between the two reads.
	for i, addr := range addrs {
		if sizes[i] == "4" {
			values[i] = int64(*(*int32)(unsafe.Pointer(addr)))
		} else {
			values[i] = *(*int64)(unsafe.Pointer(addr))
		}
	}
	text := make([]string, len(values))
	for i, v := range values {
		text[i] = strconv.FormatInt(v, 10)
	}
	fmt.Printf("STATS values=%s heap_inuse=%d heap_idle=%d heap_released=%d stack_inuse=%d gc_cpu_fraction=%.9f numgc=%d\n",
		strings.Join(text, ","), ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.StackInuse, ms.GCCPUFraction, ms.NumGC)
	runtime.KeepAlive(sink)
}

var (
	keep    []any
	counter int
)

//go:noinline
func windowStart() { counter++ }

//go:noinline
func windowEnd() { counter++ }

// allocate makes heap objects of every size class family the Go 1.27 allocator specialises
// (sizes up to 80 bytes, with and without pointers), the generic small paths (with and
// without a malloc header) and large objects. keep has room for all of them, so storing
// pointers in it allocates nothing else.
func allocate() {
	for i := 0; i < 40; i++ {
		n := 1 + i*2
		keep = append(keep, new(int32))          // tiny
		keep = append(keep, &Small{X: int32(i)}) // tiny (4 bytes, no pointers)
		keep = append(keep, &Node{Value: i})     // 24 bytes with pointers
		keep = append(keep, &Plain{A: int64(i)}) // 32 bytes with pointers
		b := make([]byte, n)                     // 1..79 bytes, no pointers
		keep = append(keep, &b[0])
		nodes := make([]*Node, 1+i%10) // 8..80 bytes with pointers
		keep = append(keep, &nodes[0])
		big := make([]byte, 200+i*50) // generic small, no pointers
		keep = append(keep, &big[0])
		ptrs := make([]*Node, 20+i) // 160..472 bytes with pointers: no header
		keep = append(keep, &ptrs[0])
		hdr := make([]*Node, 100+i*10) // 800+ bytes with pointers: malloc header
		keep = append(keep, &hdr[0])
	}
	for i := 0; i < 4; i++ {
		large := make([]byte, 40000+i*1000) // large, no pointers
		keep = append(keep, &large[0])
		largePtrs := make([]*Node, 5000+i) // large with pointers
		keep = append(keep, &largePtrs[0])
	}
	m := make(map[string]int)
	for i := 0; i < 40; i++ {
		m[strconv.Itoa(i)] = i // map buckets/groups and keys
	}
	keep = append(keep, &m)
	s := ""
	for i := 0; i < 20; i++ {
		s += strconv.Itoa(i) // string concatenation allocates
	}
	keep = append(keep, &s)
}

func count() {
	keep = make([]any, 0, 1024)
	runtime.GC()
	var before, after, final runtime.MemStats
	runtime.ReadMemStats(&before)
	windowStart()
	allocate()
	windowEnd()
	runtime.ReadMemStats(&after)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&final)
	fmt.Printf("COUNT mallocs=%d numgc=%d\n", after.Mallocs-before.Mallocs, final.NumGC)
	runtime.KeepAlive(keep)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goprobe types | layout NUMGC HEAPMARKED GOAL | count")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "types":
		types()
	case "layout":
		if len(os.Args) != 5 {
			fmt.Fprintln(os.Stderr, "layout needs three addresses")
			os.Exit(2)
		}
		layout(parseAddr(os.Args[2]), parseAddr(os.Args[3]), parseAddr(os.Args[4]))
	case "stats":
		stats(os.Args[2:])
	case "count":
		count()
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
