package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/socklb/socklb/pkg/desired"
)

func TestStandaloneNode(t *testing.T) {
	internal := func(a string) desired.NodeAddress {
		return desired.NodeAddress{Type: corev1.NodeInternalIP, Addr: netip.MustParseAddr(a)}
	}
	testCases := []struct {
		name      string
		args      []string
		want      desired.NodeInfo
		wantError string
	}{
		{"no flags: the name only", []string{"--from-dir", "/d"}, desired.NodeInfo{Name: "node-1"}, ""},
		{"zone", []string{"--from-dir", "/d", "--zone", "zone-a"}, desired.NodeInfo{Name: "node-1", Zone: "zone-a"}, ""},
		{"node IPs repeated and comma-separated, duplicates once",
			[]string{"--from-dir", "/d", "--node-ip", "192.0.2.10,fd00::10", "--node-ip", "192.0.2.11", "--node-ip", "192.0.2.10"},
			desired.NodeInfo{Name: "node-1", Addresses: []desired.NodeAddress{internal("192.0.2.10"), internal("fd00::10"), internal("192.0.2.11")}}, ""},
		{"a node IP that is not an address", []string{"--from-dir", "/d", "--node-ip", "node-1"}, desired.NodeInfo{}, `read --node-ip: ParseAddr("node-1")`},
		{"a node IP with a zone", []string{"--from-dir", "/d", "--node-ip", "fe80::1%eth0"}, desired.NodeInfo{}, `read --node-ip: address "fe80::1%eth0" has a zone`},
		{"zone in cluster mode", []string{"--kubeconfig", "k", "--zone", "zone-a"}, desired.NodeInfo{}, "--zone and --node-ip are for standalone mode"},
		{"node IP in cluster mode", []string{"--node-ip", "192.0.2.10"}, desired.NodeInfo{}, "--zone and --node-ip are for standalone mode"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var f agentFlags
			cmd := agentCommand(&f)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatalf("parse %v: %v", tc.args, err)
			}
			got, err := standaloneNode(f, "node-1")
			if wantedError(t, err, tc.wantError) {
				return
			}
			if !got.Equal(tc.want) {
				t.Errorf("standaloneNode() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSyncPeriodFlag(t *testing.T) {
	testCases := []struct {
		name      string
		args      []string
		want      time.Duration
		wantError string
	}{
		{"default: kube-proxy's five minutes", nil, 5 * time.Minute, ""},
		{"set", []string{"--sync-period", "30s"}, 30 * time.Second, ""},
		{"zero would sync without pause", []string{"--sync-period", "0s"}, 0, "--sync-period 0s: want a positive duration"},
		{"negative", []string{"--sync-period", "-1m"}, 0, "--sync-period -1m0s: want a positive duration"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var f agentFlags
			cmd := agentCommand(&f)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatalf("parse %v: %v", tc.args, err)
			}
			_, _, _, err := buildInputs(f, "node-1")
			if wantedError(t, err, tc.wantError) {
				return
			}
			if f.syncPeriod != tc.want {
				t.Errorf("--sync-period = %s, want %s", f.syncPeriod, tc.want)
			}
		})
	}
}

func TestProfilingFlag(t *testing.T) {
	testCases := []struct {
		name      string
		args      []string
		want      bool
		wantError string
	}{
		{"off by default, as kube-proxy's", nil, false, ""},
		{"on, served on the default metrics address", []string{"--profiling"}, true, ""},
		{"on with no metrics server to serve it", []string{"--profiling", "--metrics-address", ""}, false, "--profiling: the profiles are served on --metrics-address, which is empty"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var f agentFlags
			if err := agentCommand(&f).ParseFlags(tc.args); err != nil {
				t.Fatalf("parse %v: %v", tc.args, err)
			}
			_, _, _, err := buildInputs(f, "node-1")
			if wantedError(t, err, tc.wantError) {
				return
			}
			if f.serve.profiling != tc.want {
				t.Errorf("--profiling = %v, want %v", f.serve.profiling, tc.want)
			}
		})
	}
}

// wantedError fails the test unless err is what the case wants: an error
// saying want, or none when want is "". It reports whether one was wanted.
func wantedError(t *testing.T, err error, want string) bool {
	t.Helper()
	if want != "" {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want one saying %q", err, want)
		}
		return true
	}
	if err != nil {
		t.Fatalf("error = %v", err)
	}
	return false
}
