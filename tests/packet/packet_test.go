package packet

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

var (
	client4 = netip.MustParseAddrPort("192.0.2.10:40000")
	node4   = netip.MustParseAddrPort("198.51.100.1:30080")
	client6 = netip.MustParseAddrPort("[2001:db8::10]:40000")
	node6   = netip.MustParseAddrPort("[2001:db8:1::1]:30080")
)

// The checker must accept what gopacket builds and catch a checksum that a
// translation forgot to update: otherwise every fixture test would pass
// with a broken checksum path.
func TestVerifyChecksums(t *testing.T) {
	tcp4 := MustBuild(Spec{Src: client4, Dst: node4, Proto: layers.IPProtocolTCP, TCP: TCPFlags{SYN: true}, Payload: []byte("hello")})
	udp6 := MustBuild(Spec{Src: client6, Dst: node6, Proto: layers.IPProtocolUDP, Payload: []byte("hello")})
	opts := MustBuild(Spec{Src: client4, Dst: node4, Proto: layers.IPProtocolUDP, Payload: []byte("x"),
		IPv4Opts: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}}})
	icmp4, err := ICMPError(netip.MustParseAddr("10.244.1.5"), tcp4, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded, 1400)
	if err != nil {
		t.Fatal(err)
	}
	icmp6, err := ICMPError(netip.MustParseAddr("2001:db8:2::5"), udp6, layers.ICMPv6TypePacketTooBig, 0, 1280)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets past the 14-byte Ethernet header.
	testCases := []struct {
		name    string
		frame   []byte
		corrupt int    // byte to flip; -1: none
		wantErr string // "" when the frame must pass
	}{
		{"IPv4 TCP as built", tcp4, -1, ""},
		{"IPv6 UDP as built", udp6, -1, ""},
		{"IPv4 with options as built", opts, -1, ""},
		{"ICMPv4 error as built", icmp4, -1, ""},
		{"ICMPv6 error as built", icmp6, -1, ""},
		{"IPv4 destination changed, header checksum not", tcp4, 14 + 19, "IPv4 header checksum"},
		{"TCP port changed, checksum not", tcp4, 14 + 20 + 3, "TCP checksum"},
		{"UDP over IPv6 payload changed", udp6, len(udp6) - 1, "UDP checksum"},
		{"quoted IPv4 destination changed", icmp4, 14 + 20 + 8 + 19, "checksum"},
		{"ICMPv6 quoted packet changed", icmp6, len(icmp6) - 1, "ICMPv6 checksum"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			frame := append([]byte(nil), tc.frame...)
			if tc.corrupt >= 0 {
				frame[tc.corrupt] ^= 0x01
			}
			err := VerifyChecksums(frame)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("VerifyChecksums: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("VerifyChecksums = %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tcp4 := MustBuild(Spec{Src: client4, Dst: node4, Proto: layers.IPProtocolTCP, TCP: TCPFlags{SYN: true}, Payload: []byte("hi")})
	icmp4, err := ICMPError(netip.MustParseAddr("10.244.1.5"), tcp4, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort, 0)
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"TCP", tcp4, `02:00:00:00:00:01>02:00:00:00:00:02 TCP 192.0.2.10:40000 -> 198.51.100.1:30080 ttl=64 payload="hi"`},
		{"ICMP port unreachable quoting the TCP packet", icmp4,
			`02:00:00:00:00:02>02:00:00:00:00:01 ICMPv4 10.244.1.5:0 -> 192.0.2.10:0 ttl=64 icmp=3/3 quoting [TCP 192.0.2.10:40000 -> 198.51.100.1:30080 ttl=64]`},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Summarize(tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.String(); got != tc.want {
				t.Errorf("Summarize:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
