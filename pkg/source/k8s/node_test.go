package k8s

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/pkg/desired"
)

func makeTestNode(name string, labels map[string]string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status:     corev1.NodeStatus{Addresses: addrs},
	}
}

func TestNodeInfoFromNode(t *testing.T) {
	internal := func(a string) corev1.NodeAddress { return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a} }
	external := func(a string) corev1.NodeAddress { return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a} }
	want := func(typ corev1.NodeAddressType, a string) desired.NodeAddress {
		return desired.NodeAddress{Type: typ, Addr: netip.MustParseAddr(a)}
	}
	testCases := []struct {
		name      string
		node      *corev1.Node
		want      desired.NodeInfo
		wantError string // "" for none
	}{{
		name: "a bare Node has only its name",
		node: makeTestNode("node-1", nil),
		want: desired.NodeInfo{Name: "node-1"},
	}, {
		name: "the zone comes from topology.kubernetes.io/zone, other labels are not read",
		node: makeTestNode("node-1", map[string]string{corev1.LabelTopologyZone: "zone-a", corev1.LabelTopologyRegion: "region-1", "team": "x"}),
		want: desired.NodeInfo{Name: "node-1", Zone: "zone-a"},
	}, {
		name: "the deprecated zone label is not read",
		node: makeTestNode("node-1", map[string]string{corev1.LabelFailureDomainBetaZone: "zone-a"}),
		want: desired.NodeInfo{Name: "node-1"},
	}, {
		name: "InternalIP and ExternalIP addresses in the Node's order, host names left out",
		node: makeTestNode("node-1", nil,
			corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-1"},
			external("203.0.113.10"), internal("192.0.2.10"), internal("fd00::10"),
			corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "node-1.cluster.internal"}),
		want: desired.NodeInfo{Name: "node-1", Addresses: []desired.NodeAddress{
			want(corev1.NodeExternalIP, "203.0.113.10"), want(corev1.NodeInternalIP, "192.0.2.10"), want(corev1.NodeInternalIP, "fd00::10")}},
	}, {
		name: "a repeated address counts once",
		node: makeTestNode("node-1", nil, internal("192.0.2.10"), internal("192.0.2.10")),
		want: desired.NodeInfo{Name: "node-1", Addresses: []desired.NodeAddress{want(corev1.NodeInternalIP, "192.0.2.10")}},
	}, {
		name: "an address that is not a usable IP is left out and named",
		node: makeTestNode("node-1", map[string]string{corev1.LabelTopologyZone: "zone-a"},
			internal("192.0.2.300"), internal("192.0.2.10"), external("::ffff:192.0.2.11")),
		want:      desired.NodeInfo{Name: "node-1", Zone: "zone-a", Addresses: []desired.NodeAddress{want(corev1.NodeInternalIP, "192.0.2.10")}},
		wantError: `read InternalIP address: ParseAddr("192.0.2.300"): IPv4 field has value >255` + "\n" + `read ExternalIP address: address "::ffff:192.0.2.11" is IPv4-mapped IPv6`,
	}}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NodeInfoFromNode(tc.node)
			if !got.Equal(tc.want) {
				t.Errorf("NodeInfoFromNode() = %+v, want %+v", got, tc.want)
			}
			switch {
			case tc.wantError == "" && err != nil:
				t.Errorf("error = %v, want none", err)
			case tc.wantError != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantError)):
				t.Errorf("error = %v, want one starting %q", err, tc.wantError)
			}
			if slices.ContainsFunc(got.Addresses, func(a desired.NodeAddress) bool { return a.Addr.Is4In6() || a.Addr.Zone() != "" }) {
				t.Errorf("addresses %v hold a form a map key cannot", got.Addresses)
			}
		})
	}
}
