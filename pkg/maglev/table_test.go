package maglev

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.244.%d.%d:8080", i/250, i%250+2)
	}
	return out
}

// picks is the backend name each of flows' hashes picks in table t.
func picks(t []int, backends []string, flows []uint64) []string {
	out := make([]string, len(flows))
	for i, h := range flows {
		out[i] = backends[t[h%uint64(len(t))]]
	}
	return out
}

func randomFlows(n int) []uint64 {
	r := rand.New(rand.NewPCG(1, 2))
	flows := make([]uint64, n)
	for i := range flows {
		flows[i] = r.Uint64()
	}
	return flows
}

// Every backend gets its share of the table, give or take one entry.
func TestTableBalance(t *testing.T) {
	for _, tc := range []struct {
		backends int
		size     uint64
	}{{1, DefaultSize}, {3, DefaultSize}, {10, DefaultSize}, {100, DefaultSize}, {7, 251}} {
		t.Run(fmt.Sprintf("%d backends, size %d", tc.backends, tc.size), func(t *testing.T) {
			table := Table(names(tc.backends), tc.size)
			if uint64(len(table)) != tc.size {
				t.Fatalf("table has %d entries, want %d", len(table), tc.size)
			}
			counts := make([]int, tc.backends)
			for i, b := range table {
				if b < 0 || b >= tc.backends {
					t.Fatalf("entry %d = %d, not a backend index", i, b)
				}
				counts[b]++
			}
			if lo, hi := slices.Min(counts), slices.Max(counts); hi-lo > 1 {
				t.Errorf("entries per backend from %d to %d, want within one of each other", lo, hi)
			}
		})
	}
}

// Removing one of N backends moves the flows it had, about 1/N, and
// hardly any other; adding one takes about 1/(N+1) from the others.
// "Hardly any": Maglev trades a little disruption for its even spread, more
// as M/N falls (M >= 100 N, as the paper advises, keeps it under 2% of all
// flows).
func TestTableDisruption(t *testing.T) {
	flows := randomFlows(10_000)
	for _, n := range []int{3, 5, 10, 50} {
		t.Run(fmt.Sprintf("%d backends", n), func(t *testing.T) {
			all := names(n)
			before := picks(Table(all, DefaultSize), all, flows)
			gone := all[n/2]
			rest := slices.Delete(slices.Clone(all), n/2, n/2+1)
			after := picks(Table(rest, DefaultSize), rest, flows)
			moved, movedOthers := 0, 0
			for i := range flows {
				if before[i] != after[i] {
					moved++
					if before[i] != gone {
						movedOthers++
					}
				}
			}
			limit := len(flows)/n + len(flows)*2/100 // 1/N, plus 2% of the flows
			t.Logf("removing 1 of %d moved %d of %d flows (%d not on the removed backend)", n, moved, len(flows), movedOthers)
			if moved > limit {
				t.Errorf("removing 1 of %d backends moved %d of %d flows, want at most about 1/N (%d)", n, moved, len(flows), limit)
			}

			grown := append(slices.Clone(all), "10.244.9.9:8080")
			added := picks(Table(grown, DefaultSize), grown, flows)
			moved = 0
			for i := range flows {
				if before[i] != added[i] {
					moved++
				}
			}
			if limit := len(flows)/(n+1) + len(flows)*2/100; moved > limit {
				t.Errorf("adding a backend to %d moved %d of %d flows, want at most about 1/(N+1) (%d)", n, moved, len(flows), limit)
			}
		})
	}
}

// A table is a function of the backends' names alone: the order they are
// listed in changes which index an entry holds, not which backend.
func TestTableSameOnEveryNode(t *testing.T) {
	a := names(20)
	b := slices.Clone(a)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	slices.Sort(a)
	slices.Sort(b)
	ta, tb := Table(a, 1021), Table(b, 1021)
	for i := range ta {
		if a[ta[i]] != b[tb[i]] {
			t.Fatalf("entry %d: %s on one node, %s on another", i, a[ta[i]], b[tb[i]])
		}
	}
	if Table(nil, DefaultSize) != nil {
		t.Errorf("a table of no backends is not empty")
	}
}

func TestValidSize(t *testing.T) {
	for _, tc := range []struct {
		size uint64
		ok   bool
	}{{DefaultSize, true}, {65537, true}, {3, true}, {16384, false}, {1, false}, {2, false}, {MaxSize + 1, false}} {
		if err := ValidSize(tc.size); (err == nil) != tc.ok {
			t.Errorf("ValidSize(%d) = %v, want ok %v", tc.size, err, tc.ok)
		}
	}
}
