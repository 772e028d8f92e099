package main

import (
	"container/list"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Tally is one worker's counters, summed over the workers at the end.
type Tally struct {
	Work, Objects, Bytes, Payload, Checksum, Draws uint64
}

// Object counts one data object of n bytes (requested bytes = payload bytes in Go: the size
// passed to the allocator, before size-class rounding).
func (t *Tally) Object(n uint64) {
	t.Objects++
	t.Bytes += n
	t.Payload += n
}

// Touch reads the first and last byte into the checksum.
func (t *Tally) Touch(b []byte) {
	if len(b) > 0 {
		t.Checksum += uint64(b[0]) + uint64(b[len(b)-1])
	}
}

func (t *Tally) Add(o Tally) {
	t.Work += o.Work
	t.Objects += o.Objects
	t.Bytes += o.Bytes
	t.Payload += o.Payload
	t.Checksum += o.Checksum
	t.Draws += o.Draws
}

// Report is what a scenario returns.
type Report struct {
	WorkUnits, Objects, BytesRequested uint64
	Extra                              map[string]uint64
}

func (t Tally) Report() Report {
	return Report{t.Work, t.Objects, t.Bytes, map[string]uint64{
		"payload_bytes": t.Payload, "checksum": t.Checksum, "rng_draws": t.Draws,
	}}
}

func withUpstream[B any](r Report, h Heap[B]) Report {
	if allocs, bytes, ok := h.Upstream(); ok {
		r.Extra["heap_allocs"] = allocs
		r.Extra["heap_bytes"] = bytes
	}
	return r
}

// parallel runs worker(index, count, seed) for each worker (on this goroutine when there is one).
func parallel[R any](c *Config, worker func(index int, count, seed uint64) R) []R {
	seeds := WorkerSeeds(c.Seed, c.Threads)
	results := make([]R, c.Threads)
	if c.Threads == 1 {
		results[0] = worker(0, c.Size, seeds[0])
		return results
	}
	var wg sync.WaitGroup
	for i := range seeds {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = worker(i, Share(c.Size, c.Threads, i), seeds[i])
		}(i)
	}
	wg.Wait()
	return results
}

// --- binary-trees ---------------------------------------------------------------------------

const minDepth = 4

// Node is 16 bytes: two pointers.
type Node struct{ left, right *Node }

// nodeSource makes nodes with &Node{} (GC) or from a sync.Pool.
type nodeSource struct {
	pool *sync.Pool
}

func (s nodeSource) node(l, r *Node) *Node {
	if s.pool == nil {
		return &Node{l, r}
	}
	n := s.pool.Get().(*Node)
	n.left, n.right = l, r
	return n
}

// free hands a tree's nodes back to the pool; with the GC, dropping the root frees it.
func (s nodeSource) free(n *Node) {
	if s.pool == nil || n == nil {
		return
	}
	s.free(n.left)
	s.free(n.right)
	n.left, n.right = nil, nil
	s.pool.Put(n)
}

// bottomUp builds a complete tree: 2^(depth+1)-1 node allocations, children before parent.
func (s nodeSource) bottomUp(depth int) *Node {
	if depth == 0 {
		return s.node(nil, nil)
	}
	l := s.bottomUp(depth - 1)
	r := s.bottomUp(depth - 1)
	return s.node(l, r)
}

func (n *Node) check() uint64 {
	if n.left == nil {
		return 1
	}
	return 1 + n.left.check() + n.right.check()
}

func (s nodeSource) makeCheckFree(depth int) uint64 {
	t := s.bottomUp(depth)
	nodes := t.check()
	s.free(t)
	return nodes
}

func binaryTrees(c *Config) Report {
	maxDepth := int(c.Size)
	if maxDepth < minDepth+2 {
		maxDepth = minDepth + 2
	}
	src := nodeSource{}
	var misses atomic.Uint64
	if c.Pool {
		src.pool = &sync.Pool{New: func() any {
			misses.Add(1)
			return new(Node)
		}}
	}
	nodes := src.makeCheckFree(maxDepth + 1) // stretch tree
	longLived := src.bottomUp(maxDepth)
	type result struct{ trees, nodes uint64 }
	results := parallel(c, func(index int, _, _ uint64) result {
		var r result
		for depth := minDepth; depth <= maxDepth; depth += 2 {
			iterations := uint64(1) << (maxDepth - depth + minDepth)
			for i := uint64(0); i < Share(iterations, c.Threads, index); i++ {
				r.nodes += src.makeCheckFree(depth)
				r.trees++
			}
		}
		return r
	})
	trees := uint64(2) // stretch and long-lived
	for _, r := range results {
		trees += r.trees
		nodes += r.nodes
	}
	longCheck := longLived.check()
	src.free(longLived)
	nodes += longCheck
	nodeSize := uint64(unsafe.Sizeof(Node{}))
	r := Report{trees, nodes, nodes * nodeSize, map[string]uint64{
		"max_depth": uint64(maxDepth), "trees": trees, "node_size": nodeSize, "long_lived_check": longCheck,
	}}
	if c.Pool {
		r.Extra["heap_allocs"] = misses.Load()
		r.Extra["heap_bytes"] = misses.Load() * nodeSize
	}
	return r
}

// --- churn ----------------------------------------------------------------------------------

const (
	churnRound = 4096
	churnSlots = 256
)

func churnWorker[B any](h Heap[B], count, seed uint64) Tally {
	rng := NewRng(seed)
	var t Tally
	for t.Objects < count {
		round := count - t.Objects
		if round > churnRound {
			round = churnRound
		}
		slots := make([]B, churnSlots)
		for i := uint64(0); i < round; i++ {
			n := MixedSize(rng)
			slot := rng.Below(churnSlots)
			b := h.Alloc(n, FillByte(t.Objects))
			t.Object(n)
			t.Touch(h.Bytes(b))
			h.Free(slots[slot]) // the slot's previous object
			slots[slot] = b
		}
		for _, b := range slots {
			h.Free(b)
		}
	}
	t.Work = count
	t.Draws = rng.Draws
	return t
}

// --- fragmentation --------------------------------------------------------------------------

const fragRound = 16384

func fragmentationWorker[B any](h Heap[B], count, seed uint64) Tally {
	rng := NewRng(seed)
	var t Tally
	for done := uint64(0); done < count; {
		round := count - done
		if round > fragRound {
			round = fragRound
		}
		small := make([]B, round)
		for i := range small {
			n := 16 + rng.Below(113)
			small[i] = h.Alloc(n, FillByte(t.Objects))
			t.Object(n)
		}
		var zero B
		for i := 1; i < len(small); i += 2 {
			h.Free(small[i]) // every other small object
			small[i] = zero
		}
		large := make([]B, round/2)
		for i := range large {
			n := 256 + rng.Below(769)
			large[i] = h.Alloc(n, FillByte(t.Objects))
			t.Object(n)
		}
		for i := 0; i < len(small); i += 2 {
			t.Touch(h.Bytes(small[i]))
			h.Free(small[i])
		}
		for _, b := range large {
			t.Touch(h.Bytes(b))
			h.Free(b)
		}
		done += round
	}
	t.Work = count
	t.Draws = rng.Draws
	return t
}

// --- growth ---------------------------------------------------------------------------------

const growthGroup = 8

func targetLen(r *Rng) uint64 {
	if r.Below(100) < 90 {
		return 1 + r.Below(1000)
	}
	return 1 + r.Below(100000)
}

// growthWorker: a growth step is an append that changes cap(): one new backing array.
func growthWorker(count, seed uint64) Tally {
	rng := NewRng(seed)
	var t Tally
	vecs := make([][]uint64, growthGroup)
	var lens [growthGroup]uint64
	for done := uint64(0); done < count; {
		k := count - done
		if k > growthGroup {
			k = growthGroup
		}
		longest := uint64(0)
		for i := uint64(0); i < k; i++ {
			lens[i] = targetLen(rng)
			if lens[i] > longest {
				longest = lens[i]
			}
		}
		for j := uint64(0); j < longest; j++ {
			for i := uint64(0); i < k; i++ {
				if j >= lens[i] {
					continue
				}
				before := cap(vecs[i])
				vecs[i] = append(vecs[i], j&0xFF)
				if cap(vecs[i]) != before {
					t.Objects++
					t.Bytes += uint64(cap(vecs[i])) * 8
				}
			}
		}
		for i := uint64(0); i < k; i++ {
			for _, v := range vecs[i] {
				t.Checksum += v
			}
			t.Work += uint64(len(vecs[i]))
			vecs[i] = nil // the next group starts from nothing
		}
		done += k
	}
	t.Payload = t.Work * 8
	t.Draws = rng.Draws
	return t
}

// --- producer-consumer ----------------------------------------------------------------------

const pcQueue = 256

func producerConsumer[B any](c *Config, h Heap[B]) (Tally, int) {
	seeds := WorkerSeeds(c.Seed, c.Threads)
	produced := make([]Tally, c.Threads)
	consumed := make([]Tally, c.Threads)
	var wg sync.WaitGroup
	for i, seed := range seeds {
		ch := make(chan B, pcQueue)
		wg.Add(2)
		go func(i int, seed uint64) { // producer
			defer wg.Done()
			rng := NewRng(seed)
			t := &produced[i]
			count := Share(c.Size, c.Threads, i)
			for k := uint64(0); k < count; k++ {
				n := 16 + rng.Below(4081)
				b := h.Alloc(n, FillByte(t.Objects))
				t.Object(n)
				ch <- b
			}
			close(ch)
			t.Work = count
			t.Draws = rng.Draws
		}(i, seed)
		go func(i int) { // consumer
			defer wg.Done()
			for b := range ch {
				consumed[i].Touch(h.Bytes(b))
				h.Free(b) // the last reference is dropped here, on the consumer goroutine
			}
		}(i)
	}
	wg.Wait()
	var total Tally
	for i := range produced {
		total.Add(produced[i])
		total.Add(consumed[i])
	}
	return total, pcQueue
}

// --- cache ----------------------------------------------------------------------------------

const (
	cacheCapacity = 4096
	cacheKeys     = 16384
)

type cacheEntry[B any] struct {
	key   uint64
	value B
}

// cacheWorker uses the classic Go LRU: a container/list of entries (most recent at the front)
// and a map from key to list element. Each insert allocates the entry, its list element and the
// value.
func cacheWorker[B any](h Heap[B], count, seed uint64) (Tally, uint64, uint64) {
	rng := NewRng(seed)
	var t Tally
	var hits, evictions uint64
	order := list.New()
	index := make(map[uint64]*list.Element, cacheCapacity+1)
	for i := uint64(0); i < count; i++ {
		key := rng.Below(1 + rng.Below(cacheKeys))
		if e, ok := index[key]; ok {
			order.MoveToFront(e)
			t.Touch(h.Bytes(e.Value.(*cacheEntry[B]).value))
			hits++
			continue
		}
		n := 16 + rng.Below(1009)
		value := h.Alloc(n, FillByte(t.Objects))
		t.Object(n)
		t.Touch(h.Bytes(value))
		index[key] = order.PushFront(&cacheEntry[B]{key, value})
		if len(index) > cacheCapacity {
			oldest := order.Remove(order.Back()).(*cacheEntry[B])
			delete(index, oldest.key)
			h.Free(oldest.value)
			evictions++
		}
	}
	t.Work = count
	t.Draws = rng.Draws
	return t, hits, evictions
}
