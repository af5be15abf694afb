package lbmap_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/socklb/socklb/pkg/lbmap"
)

// A source-range key reads back as the service id and prefix it was made
// of, the host bits masked; the trie counts the id's 32 bits and, for IPv4,
// the 96 of the mapping.
func TestSourceRangeKeyRoundTrip(t *testing.T) {
	testCases := []struct {
		name          string
		id            uint32
		prefix        string
		wantPrefix    string
		wantPrefixlen uint32
	}{
		{"IPv4", 7, "192.0.2.0/24", "192.0.2.0/24", 32 + 96 + 24},
		{"IPv4 host bits masked", 0x01020304, "192.0.2.77/24", "192.0.2.0/24", 32 + 96 + 24},
		{"IPv4 host", 1, "198.51.100.7/32", "198.51.100.7/32", 32 + 128},
		{"IPv6", 65536, "2001:db8:1::/48", "2001:db8:1::/48", 32 + 48},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			k := lbmap.NewSourceRangeKey(tc.id, netip.MustParsePrefix(tc.prefix))
			if k.Prefixlen != tc.wantPrefixlen {
				t.Errorf("prefixlen = %d, want %d", k.Prefixlen, tc.wantPrefixlen)
			}
			if got := k.ServiceID(); got != tc.id {
				t.Errorf("ServiceID() = %d, want %d", got, tc.id)
			}
			if got := k.Prefix(); got != netip.MustParsePrefix(tc.wantPrefix) {
				t.Errorf("Prefix() = %s, want %s", got, tc.wantPrefix)
			}
		})
	}
}

// A refuse key reads back as the prefix it was made of; an IPv4 prefix
// counts the 96 bits of the mapping.
func TestRefuseKeyRoundTrip(t *testing.T) {
	testCases := []struct {
		name          string
		prefix        string
		wantPrefix    string
		wantPrefixlen uint32
	}{
		{"IPv4 CIDR", "10.96.0.0/12", "10.96.0.0/12", 96 + 12},
		{"IPv4 host bits masked", "10.96.7.7/16", "10.96.0.0/16", 96 + 16},
		{"IPv4 ClusterIP", "10.96.0.10/32", "10.96.0.10/32", 128},
		{"IPv6 CIDR", "fd00:10:96::/108", "fd00:10:96::/108", 108},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			k := lbmap.NewRefuseKey(netip.MustParsePrefix(tc.prefix))
			if k.Prefixlen != tc.wantPrefixlen {
				t.Errorf("prefixlen = %d, want %d", k.Prefixlen, tc.wantPrefixlen)
			}
			if got := k.Prefix(); got != netip.MustParsePrefix(tc.wantPrefix) {
				t.Errorf("Prefix() = %s, want %s", got, tc.wantPrefix)
			}
		})
	}
}

// The syncer keeps the text of name entries; it must be what the entry
// reads back as, or every sync would rewrite the entry.
func TestServiceNameTextIsWhatTheEntryHolds(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"short", "default/web:http"},
		{"empty", ""},
		{"exactly what fits", strings.Repeat("a", 159)},
		{"longer than the entry", strings.Repeat("b", 200)},
		{"a NUL byte cuts it", "default/we\x00b"},
		{"bytes beyond ASCII", "default/wéb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := lbmap.ServiceNameText(tc.in), lbmap.NewServiceName(tc.in).Get(); got != want {
				t.Errorf("ServiceNameText(%q) = %q, the entry reads back %q", tc.in, got, want)
			}
		})
	}
}
