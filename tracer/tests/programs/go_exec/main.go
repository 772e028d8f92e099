// Allocates in Go, then execs the program given as its first argument (a C program) with
// the rest: the trace must follow the pid from the Go image into the C one.
package main

import (
	"fmt"
	"os"
	"syscall"
)

var sink [][]byte

func main() {
	for i := 0; i < 100; i++ {
		sink = append(sink, make([]byte, 9000+i))
	}
	fmt.Printf("{\"pid\": %d, \"go_allocs\": %d}\n", os.Getpid(), len(sink))
	if err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
