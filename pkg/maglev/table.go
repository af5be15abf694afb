package maglev

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/socklb/socklb/pkg/lbmap"
)

// DefaultSize is the default table size: a prime, as Maglev needs, about
// 100 times the backends a frontend usually has, so the shares stay within
// about 1% of each other.
const DefaultSize = 16381

// MaxSize bounds the flag: a table takes 8 bytes per entry in the kernel.
const MaxSize = 1 << 20

// ValidSize reports why m cannot be a table size.
func ValidSize(m uint64) error {
	if m < 3 || m > MaxSize {
		return fmt.Errorf("maglev table size %d: want a prime from 3 to %d", m, MaxSize)
	}
	if !isPrime(m) {
		return fmt.Errorf("maglev table size %d: not a prime (the permutations must visit every entry)", m)
	}
	return nil
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// permutation is where backend name starts and how far it steps: two
// independent hashes of its name.
func permutation(name string, m uint64) (offset, skip uint64) {
	h := fnv.New64a()
	h.Write([]byte(name))
	a := h.Sum64()
	h.Write([]byte{0})
	b := h.Sum64()
	return a % m, b%(m-1) + 1
}

// Table fills a table of size m (a prime, see ValidSize) from backends,
// named by something every node spells alike (the address and port): entry
// i is the index in backends of the backend hash value i picks. Each
// backend in turn takes the next free entry of its own permutation, so
// every backend gets m/len(backends) entries, give or take one. Empty
// when backends is.
func Table(backends []string, m uint64) []int {
	if len(backends) == 0 {
		return nil
	}
	offsets := make([]uint64, len(backends))
	skips := make([]uint64, len(backends))
	for i, b := range backends {
		offsets[i], skips[i] = permutation(b, m)
	}
	next := make([]uint64, len(backends))
	table := make([]int, m)
	for i := range table {
		table[i] = -1
	}
	for filled := uint64(0); ; {
		for i := range backends {
			c := (offsets[i] + next[i]*skips[i]) % m
			for table[c] >= 0 {
				next[i]++
				c = (offsets[i] + next[i]*skips[i]) % m
			}
			table[c] = i
			next[i]++
			if filled++; filled == m {
				return table
			}
		}
	}
}

// FlowHash is bpf/lib/maglev.h's maglev_flow_hash of a connection-table
// key: the same words, the addresses read as the little-endian BPF target
// loads them, the ports as the raw network-order values the key holds.
func FlowHash(k lbmap.FlowKey) uint64 {
	h := uint64(0x736f636b6c62)
	for i := 0; i < 4; i++ {
		h = mix(h, binary.LittleEndian.Uint32(k.Saddr[i*4:]))
	}
	for i := 0; i < 4; i++ {
		h = mix(h, binary.LittleEndian.Uint32(k.Daddr[i*4:]))
	}
	h = mix(h, uint32(k.Sport)|uint32(k.Dport)<<16)
	h = mix(h, uint32(k.Proto))
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func mix(h uint64, w uint32) uint64 {
	h = (h ^ uint64(w)) * 0x9e3779b97f4a7c15
	return h ^ h>>32
}
