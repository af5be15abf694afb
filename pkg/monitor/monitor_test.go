package monitor

import (
	"testing"
	"time"
)

func TestMatchService(t *testing.T) {
	for _, tc := range []struct {
		service, ref string
		want         bool
	}{
		{"default/web:http", "", true},
		{"default/web:http", "default/web", true},
		{"default/web", "default/web", true},
		{"default/web-2:http", "default/web", false},
		{"kube-system/web:http", "default/web", false},
	} {
		if got := MatchService(tc.service, tc.ref); got != tc.want {
			t.Errorf("MatchService(%q, %q) = %v, want %v", tc.service, tc.ref, got, tc.want)
		}
	}
}

func TestEventString(t *testing.T) {
	at := time.Date(2026, 12, 1, 18, 40, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		name string
		e    Event
		want string
	}{
		{"translated", Event{Time: at, Hook: "connect", PID: 42, Comm: "curl", Cookie: 7, NetnsCookie: 9, Service: "default/web:http",
			Protocol: "TCP", Frontend: "10.96.0.50:80", Backend: "10.244.0.3:8080", Verdict: "translated"},
			"18:40:00.123456 connect pid=42 comm=curl cookie=7 netns=9 default/web:http 10.96.0.50:80/TCP -> 10.244.0.3:8080 translated"},
		{"refused, with a reason", Event{Time: at, Hook: "sendmsg", PID: 1, Comm: "dig", Service: "default/dns:dns",
			Protocol: "UDP", Frontend: "10.96.0.10:53", Verdict: "refused", Reason: "wrong-family"},
			"18:40:00.123456 sendmsg pid=1 comm=dig cookie=0 netns=0 default/dns:dns 10.96.0.10:53/UDP -> - refused (wrong-family)"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
