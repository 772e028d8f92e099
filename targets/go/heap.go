package main

import (
	"sync"
	"sync/atomic"
)

// Heap is where a scenario gets its byte buffers: B is []byte for the garbage-collected heap
// (one make([]byte, n) per object, reclaimed by the GC) and *[]byte for the sync.Pool variant
// (buffers handed back with Free and reused).
type Heap[B any] interface {
	Alloc(n uint64, fill byte) B
	Bytes(b B) []byte
	// Free gives a buffer back: a no-op for the GC heap (dropping the last reference is what
	// frees it), a Put for the pool. Accepts the zero B.
	Free(b B)
	// Upstream is what reached the Go allocator on the heap's behalf when that differs from
	// one allocation per object: (allocations, bytes, ok).
	Upstream() (uint64, uint64, bool)
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

type gcHeap struct{}

func (gcHeap) Alloc(n uint64, v byte) []byte {
	b := make([]byte, n)
	fill(b, v)
	return b
}
func (gcHeap) Bytes(b []byte) []byte            { return b }
func (gcHeap) Free([]byte)                      {}
func (gcHeap) Upstream() (uint64, uint64, bool) { return 0, 0, false }

// poolHeap keeps one sync.Pool per power-of-two capacity. A miss allocates the buffer (its
// class's capacity) and the 24-byte slice header the pool stores (*[]byte, so Put does not
// allocate).
type poolHeap struct {
	pools             [64]sync.Pool
	misses, missBytes atomic.Uint64
}

const sliceHeaderSize = 24

func (p *poolHeap) Alloc(n uint64, v byte) *[]byte {
	c := sizeClass(n)
	var b *[]byte
	if got := p.pools[c].Get(); got != nil {
		b = got.(*[]byte)
		*b = (*b)[:n]
	} else {
		p.misses.Add(1)
		p.missBytes.Add(uint64(1)<<c + sliceHeaderSize)
		s := make([]byte, n, uint64(1)<<c)
		b = &s
	}
	fill(*b, v)
	return b
}
func (p *poolHeap) Bytes(b *[]byte) []byte { return *b }
func (p *poolHeap) Free(b *[]byte) {
	if b != nil {
		p.pools[sizeClass(uint64(cap(*b)))].Put(b)
	}
}
func (p *poolHeap) Upstream() (uint64, uint64, bool) {
	return 2 * p.misses.Load(), p.missBytes.Load(), true
}
