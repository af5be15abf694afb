package healthcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// freePort asks the kernel for a loopback port nobody listens on.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

type answer struct {
	status int
	weight string
	body   struct {
		Service struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"service"`
		LocalEndpoints      int  `json:"localEndpoints"`
		ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
	}
}

func get(t *testing.T, port uint16) (answer, error) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, weight: resp.Header.Get("X-Load-Balancing-Endpoint-Weight")}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("health check body is not JSON: %v: %q", err, raw)
	}
	return a, nil
}

func TestHealthCheckAnswers(t *testing.T) {
	web := ServiceRef{"default", "web"}
	testCases := []struct {
		name       string
		endpoints  int
		healthy    bool
		wantStatus int
	}{
		{"a local endpoint: 200", 2, true, http.StatusOK},
		{"no local endpoint: 503", 0, true, http.StatusServiceUnavailable},
		{"agent unhealthy: 503 even with endpoints", 1, false, http.StatusServiceUnavailable},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			var healthy atomic.Bool
			healthy.Store(tc.healthy)
			s := New([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, healthy.Load, zaptest.NewLogger(t))
			t.Cleanup(s.Close)
			port := freePort(t)
			if err := s.Sync(map[ServiceRef]Service{web: {Port: port, LocalEndpoints: tc.endpoints}}); err != nil {
				t.Fatal(err)
			}
			a, err := get(t, port)
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tc.wantStatus {
				t.Errorf("status %d, want %d", a.status, tc.wantStatus)
			}
			if a.weight != fmt.Sprint(tc.endpoints) {
				t.Errorf("X-Load-Balancing-Endpoint-Weight %q, want %d", a.weight, tc.endpoints)
			}
			if a.body.Service.Namespace != "default" || a.body.Service.Name != "web" ||
				a.body.LocalEndpoints != tc.endpoints || a.body.ServiceProxyHealthy != tc.healthy {
				t.Errorf("body %+v, want default/web with %d endpoints, healthy=%v", a.body, tc.endpoints, tc.healthy)
			}
		})
	}
}

func TestHealthCheckSync(t *testing.T) {
	s := New([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil, zaptest.NewLogger(t))
	t.Cleanup(s.Close)
	web, api := ServiceRef{"default", "web"}, ServiceRef{"default", "api"}
	p1, p2 := freePort(t), freePort(t)

	steps := []struct {
		desc     string
		want     map[ServiceRef]Service
		wantErr  string
		answered map[uint16]int // port -> status; 0 = nothing listens
	}{
		{"web opens", map[ServiceRef]Service{web: {p1, 1}}, "", map[uint16]int{p1: 200, p2: 0}},
		{"web loses its endpoint", map[ServiceRef]Service{web: {p1, 0}}, "", map[uint16]int{p1: 503}},
		{"web moves port", map[ServiceRef]Service{web: {p2, 3}}, "", map[uint16]int{p1: 0, p2: 200}},
		{"api wants web's port: only api fails", map[ServiceRef]Service{web: {p2, 3}, api: {p2, 1}}, "Service default/api on port", map[uint16]int{p2: 200}},
		{"everything removed", map[ServiceRef]Service{}, "", map[uint16]int{p1: 0, p2: 0}},
	}
	for _, st := range steps {
		err := s.Sync(st.want)
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", st.desc, err)
		case st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)):
			t.Fatalf("%s: error %v, want one saying %q", st.desc, err, st.wantErr)
		}
		for port, status := range st.answered {
			a, err := get(t, port)
			if status == 0 {
				if err == nil {
					t.Errorf("%s: port %d answered %d, want nothing listening", st.desc, port, a.status)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: port %d: %v", st.desc, port, err)
			} else if a.status != status {
				t.Errorf("%s: port %d answered %d, want %d", st.desc, port, a.status, status)
			}
		}
	}
}
