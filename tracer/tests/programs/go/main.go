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

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goprobe types | layout NUMGC HEAPMARKED GOAL")
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
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
