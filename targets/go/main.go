// Command alloc-go runs the alloctrace workload scenarios in Go (standard library only).
//
//	alloc-go <scenario> [--size N] [--seed S] [--threads T] [--variant pool]
//	alloc-go --list [--variant pool]
//
// targets/README.md specifies the scenarios; the Rust, C++ and Python targets implement the
// same ones with the same PRNG draws. The GC target is chosen by the environment (GOGC=50/200,
// default 100) and recorded in the JSON line printed on stdout at exit; --variant pool recycles
// objects through sync.Pool instead of leaving them to the GC.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Scenarios and their default sizes (each run takes about 1-5 s on the project's machine).
var scenarios = []struct {
	name        string
	defaultSize uint64
	poolOK      bool // growth's allocations come from append: sync.Pool has no say in them
}{
	{"binary-trees", 18, true},
	{"churn", 3000000, true},
	{"fragmentation", 5000000, true},
	{"growth", 20000, false},
	{"producer-consumer", 1500000, true},
	{"cache", 5000000, true},
}

type Config struct {
	Scenario string
	Size     uint64
	Seed     uint64
	Threads  int
	Pool     bool
	List     bool
}

func parseArgs(args []string) (*Config, error) {
	c := &Config{Seed: 1, Threads: 1}
	haveSize := false
	for i := 0; i < len(args); i++ {
		arg, value, hasValue := args[i], "", false
		if strings.HasPrefix(arg, "--") && strings.Contains(arg, "=") {
			arg, value, hasValue = arg[:strings.Index(arg, "=")], arg[strings.Index(arg, "=")+1:], true
		}
		next := func() (string, error) {
			if hasValue {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", arg)
			}
			i++
			return args[i], nil
		}
		number := func() (uint64, error) {
			v, err := next()
			if err != nil {
				return 0, err
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: not a number: %s", arg, v)
			}
			return n, nil
		}
		switch {
		case arg == "--size" || arg == "--seed" || arg == "--threads":
			n, err := number()
			if err != nil {
				return nil, err
			}
			switch arg {
			case "--size":
				c.Size, haveSize = n, true
			case "--seed":
				c.Seed = n
			default:
				c.Threads = int(n)
			}
		case arg == "--variant":
			v, err := next()
			if err != nil {
				return nil, err
			}
			switch v {
			case "pool":
				c.Pool = true
			case "default", "gc":
				c.Pool = false
			default:
				return nil, fmt.Errorf("unknown variant %q (known: pool)", v)
			}
		case arg == "--list":
			c.List = true
		case arg == "-h" || arg == "--help":
			return nil, errors.New("")
		case strings.HasPrefix(arg, "-"):
			return nil, fmt.Errorf("unknown option %s", arg)
		case c.Scenario == "":
			c.Scenario = arg
		default:
			return nil, fmt.Errorf("unexpected argument %s", arg)
		}
	}
	if c.List {
		return c, nil
	}
	if c.Scenario == "" {
		return nil, errors.New("no scenario given")
	}
	found := false
	for _, s := range scenarios {
		if s.name == c.Scenario {
			found = true
			if !haveSize {
				c.Size = s.defaultSize
			}
			if c.Pool && !s.poolOK {
				return nil, fmt.Errorf("scenario %s is not supported by the pool variant", c.Scenario)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("unknown scenario %q", c.Scenario)
	}
	if c.Threads < 1 {
		return nil, errors.New("--threads must be at least 1")
	}
	return c, nil
}

// variantName is the GC setting (from GOGC, as the runtime reads it) plus "+pool".
func variantName(pool bool) string {
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		gogc = "100"
	}
	name := "gogc" + gogc
	if pool {
		name += "+pool"
	}
	return name
}

func run(c *Config) Report {
	switch c.Scenario {
	case "binary-trees":
		return binaryTrees(c)
	case "growth":
		var total Tally
		for _, t := range parallel(c, func(_ int, count, seed uint64) Tally { return growthWorker(count, seed) }) {
			total.Add(t)
		}
		return Report{total.Work, total.Objects, total.Bytes, map[string]uint64{
			"vectors": c.Size, "elements": total.Work, "payload_bytes": total.Payload,
			"checksum": total.Checksum, "rng_draws": total.Draws,
		}}
	}
	if c.Pool {
		return runBuffers[*[]byte](c, &poolHeap{})
	}
	return runBuffers[[]byte](c, gcHeap{})
}

// runBuffers runs the scenarios whose objects are byte buffers from h.
func runBuffers[B any](c *Config, h Heap[B]) Report {
	var total Tally
	var r Report
	switch c.Scenario {
	case "churn":
		for _, t := range parallel(c, func(_ int, count, seed uint64) Tally { return churnWorker(h, count, seed) }) {
			total.Add(t)
		}
		r = total.Report()
	case "fragmentation":
		for _, t := range parallel(c, func(_ int, count, seed uint64) Tally { return fragmentationWorker(h, count, seed) }) {
			total.Add(t)
		}
		r = total.Report()
		r.Extra["small_objects"] = total.Work
		r.Extra["large_objects"] = total.Objects - total.Work
	case "producer-consumer":
		t, queue := producerConsumer(c, h)
		r = t.Report()
		r.Extra["pairs"] = uint64(c.Threads)
		r.Extra["queue_capacity"] = uint64(queue)
	case "cache":
		var hits, evictions uint64
		for _, res := range parallel(c, func(_ int, count, seed uint64) cacheResult {
			t, h, e := cacheWorker(h, count, seed)
			return cacheResult{t, h, e}
		}) {
			total.Add(res.t)
			hits += res.hits
			evictions += res.evictions
		}
		r = total.Report()
		r.Extra["capacity"] = cacheCapacity
		r.Extra["hits"] = hits
		r.Extra["misses"] = total.Objects
		r.Extra["evictions"] = evictions
	}
	return withUpstream(r, h)
}

type cacheResult struct {
	t               Tally
	hits, evictions uint64
}

type line struct {
	Lang           string            `json:"lang"`
	Variant        string            `json:"variant"`
	Toolchain      string            `json:"toolchain"`
	Scenario       string            `json:"scenario"`
	Size           uint64            `json:"size"`
	Seed           uint64            `json:"seed"`
	Threads        int               `json:"threads"`
	WorkUnits      uint64            `json:"work_units"`
	Objects        uint64            `json:"objects"`
	BytesRequested uint64            `json:"bytes_requested"`
	ElapsedMs      float64           `json:"elapsed_ms"`
	Extra          map[string]uint64 `json:"extra"`
}

type listing struct {
	Lang         string            `json:"lang"`
	Variant      string            `json:"variant"`
	Toolchain    string            `json:"toolchain"`
	Scenarios    []string          `json:"scenarios"`
	DefaultSizes map[string]uint64 `json:"default_sizes"`
}

func main() {
	c, err := parseArgs(os.Args[1:])
	if err != nil {
		if err.Error() != "" {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		fmt.Fprintln(os.Stderr, "usage: alloc-go <scenario> [--size N] [--seed S] [--threads T] [--variant pool]")
		fmt.Fprintln(os.Stderr, "       alloc-go --list [--variant pool]")
		names := make([]string, len(scenarios))
		for i, s := range scenarios {
			names[i] = s.name
		}
		fmt.Fprintln(os.Stderr, "scenarios:", strings.Join(names, ", "))
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	if c.List {
		l := listing{"go", variantName(c.Pool), runtime.Version(), nil, map[string]uint64{}}
		for _, s := range scenarios {
			if !c.Pool || s.poolOK {
				l.Scenarios = append(l.Scenarios, s.name)
				l.DefaultSizes[s.name] = s.defaultSize
			}
		}
		_ = out.Encode(l)
		return
	}
	start := time.Now()
	r := run(c)
	elapsed := float64(time.Since(start).Microseconds()/100) / 10
	_ = out.Encode(line{"go", variantName(c.Pool), runtime.Version(), c.Scenario, c.Size, c.Seed, c.Threads,
		r.WorkUnits, r.Objects, r.BytesRequested, elapsed, r.Extra})
}
