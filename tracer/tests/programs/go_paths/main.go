// Three allocating call paths in distinct functions, for the call-site test: each allocates a
// different type (so the sizes differ) a known number of times. The markers name the lines.
package main

import (
	"fmt"
	"os"
)

type Alpha struct{ buf [3000]byte }
type Beta struct {
	next *Beta
	pad  [200]int64
}
type Gamma [1000]int32

var keep []interface{}

//go:noinline
func makeAlpha() *Alpha {
	return new(Alpha) // SITE_ALPHA
}

//go:noinline
func makeBeta(prev *Beta) *Beta {
	return &Beta{next: prev} // SITE_BETA
}

//go:noinline
func makeGamma() *Gamma {
	return new(Gamma) // SITE_GAMMA
}

func main() {
	n := 300
	if len(os.Args) > 1 {
		fmt.Sscan(os.Args[1], &n)
	}
	var b *Beta
	for i := 0; i < n; i++ {
		keep = append(keep, makeAlpha())
		b = makeBeta(b)
		keep = append(keep, makeGamma())
	}
	keep = append(keep, b)
	fmt.Println(len(keep))
}
