package main

import "math/bits"

// Rng is splitmix64: the same seed gives the same sequence in all four languages.
type Rng struct {
	state uint64
	Draws uint64
}

func NewRng(seed uint64) *Rng { return &Rng{state: seed} }

func (r *Rng) Next() uint64 {
	r.Draws++
	r.state += 0x9E3779B97F4A7C15
	z := r.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Below is uniform-ish in [0, n) (plain modulo, as in the other languages).
func (r *Rng) Below(n uint64) uint64 { return r.Next() % n }

// WorkerSeeds gives one seed per worker: the first `threads` outputs of NewRng(seed).
func WorkerSeeds(seed uint64, threads int) []uint64 {
	root := NewRng(seed)
	seeds := make([]uint64, threads)
	for i := range seeds {
		seeds[i] = root.Next()
	}
	return seeds
}

// Share is worker index's part of total items split over parts workers.
func Share(total uint64, parts, index int) uint64 {
	s := total / uint64(parts)
	if uint64(index) < total%uint64(parts) {
		s++
	}
	return s
}

// FillByte is the fill of the index-th object a worker allocates: never 0.
func FillByte(index uint64) byte { return byte(1 + index%255) }

// MixedSize is churn's size distribution (always two draws).
func MixedSize(r *Rng) uint64 {
	switch class := r.Below(1000); {
	case class < 600:
		return 16 + r.Below(112)
	case class < 900:
		return 128 + r.Below(896)
	case class < 990:
		return 1024 + r.Below(7168)
	case class < 999:
		return 8192 + r.Below(57344)
	default:
		return 65536 + r.Below(196608)
	}
}

// sizeClass is the power-of-two pool class that holds n bytes.
func sizeClass(n uint64) int { return bits.Len64(n - 1) }
