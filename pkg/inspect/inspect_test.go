package inspect

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/pkg/lbmap"
)

func TestWriteServices(t *testing.T) {
	views := []ServiceView{
		{Frontend: "10.96.0.50:80", Protocol: "TCP", Service: "default/web:http", ServiceID: 1, Flags: "ClusterIP", Active: 1, Terminating: 1,
			Backends: []BackendSlot{
				{Slot: 1, BackendID: 3, Address: "10.244.0.2:8080", State: "active"},
				{Slot: 2, BackendID: 4, Address: "10.244.0.3:8080", State: "terminating"},
			}},
		{Frontend: "[fd00::10]:53", Protocol: "UDP", ServiceID: 2, Flags: "ClusterIP", Backends: []BackendSlot{},
			Problems: []string{"slot 1 is missing"}},
	}
	cases := []struct {
		name   string
		format Format
		want   []string
	}{
		{"table names the service, marks the terminating tail and says what an empty set does", Table, []string{
			"FRONTEND", "default/web:http", "10.244.0.2:8080#3 10.244.0.3:8080#4(terminating)",
			"[fd00::10]:53", "<none: connects refused>", "PROBLEM: slot 1 is missing",
		}},
		{"json keeps every field", JSON, []string{`"frontend": "10.96.0.50:80"`, `"state": "terminating"`, `"backend_id": 4`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := WriteServices(&out, tc.format, views); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if tc.format == JSON {
				var back []ServiceView
				if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back) != 2 || back[0].Backends[1].State != "terminating" {
					t.Errorf("JSON does not round-trip: %v %+v", err, back)
				}
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr bool
	}{{"table", false}, {"json", false}, {"yaml", true}} {
		if _, err := ParseFormat(tc.in); (err != nil) != tc.wantErr {
			t.Errorf("ParseFormat(%q) error = %v, want error %t", tc.in, err, tc.wantErr)
		}
	}
}

// render prints a fixture's services and backends in format, as socklb
// inspect services and inspect backends do.
func render(t *testing.T, f mapsFixture, format Format) string {
	t.Helper()
	var b bytes.Buffer
	views, err := services(f.tables())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteServices(&b, format, views); err != nil {
		t.Fatal(err)
	}
	bviews, err := backendViews(f.tables())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBackends(&b, format, bviews); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// testdata/single_scope.golden was written by inspect before it decoded
// slots through lbmap.DecodeFrontends and knew of scopes: with one scope per
// frontend its output must not change by a byte.
func TestSingleScopeOutputUnchanged(t *testing.T) {
	golden, err := os.ReadFile("testdata/single_scope.golden")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	var name string
	for _, line := range strings.SplitAfter(string(golden), "\n") {
		if h, ok := strings.CutPrefix(line, "=== "); ok {
			name = strings.TrimSuffix(h, "\n")
			continue
		}
		sections[name] += line
	}
	for _, f := range singleScopeFixtures {
		for _, format := range []Format{Table, JSON} {
			t.Run(f.name+"/"+string(format), func(t *testing.T) {
				want, ok := sections[f.name+" "+string(format)]
				if !ok {
					t.Fatalf("no golden output for %q", f.name)
				}
				if got := render(t, f, format); got != want {
					t.Errorf("output changed:\n%s\nwant:\n%s", got, want)
				}
			})
		}
	}
}

// A frontend's second scope shows under "internal" in JSON and as a row of
// its own in a table; one that no socket reaches says so.
func TestInternalScope(t *testing.T) {
	web := func(flags lbmap.ServiceFlags) map[lbmap.ServiceKey]lbmap.ServiceValue {
		return map[lbmap.ServiceKey]lbmap.ServiceValue{
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 0):  master(1, 2, 0, flags),
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 1):  slot(1, 1),
			key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 2):  slot(1, 2),
			key("10.96.0.50", 80, tcp, lbmap.ScopeInternal, 0): master(1, 1, 0, lbmap.FlagClusterIP),
			key("10.96.0.50", 80, tcp, lbmap.ScopeInternal, 1): slot(1, 2),
		}
	}
	bs := map[uint32]lbmap.Backend{
		1: backend("10.244.0.2", 8080, tcp, lbmap.BackendActive),
		2: backend("10.244.0.3", 8080, tcp, lbmap.BackendActive),
	}
	names := map[uint32]string{1: "default/web:http"}
	orphan := map[lbmap.ServiceKey]lbmap.ServiceValue{
		key("10.96.0.50", 80, tcp, lbmap.ScopeInternal, 0): master(1, 0, 0, lbmap.FlagClusterIP),
	}
	missing := map[lbmap.ServiceKey]lbmap.ServiceValue{
		key("10.96.0.50", 80, tcp, lbmap.ScopeDefault, 0): master(1, 0, 0, lbmap.FlagClusterIP|lbmap.FlagTwoScopes),
	}
	cases := []struct {
		name   string
		f      mapsFixture
		format Format
		want   []string
	}{
		{"table: a row for the internal scope", mapsFixture{services: web(lbmap.FlagClusterIP | lbmap.FlagTwoScopes), backends: bs, names: names}, Table, []string{
			"10.96.0.50:80            TCP    default/web:http  1   ClusterIP|TwoScopes  2       0            10.244.0.2:8080#1 10.244.0.3:8080#2\n",
			"10.96.0.50:80(internal)  TCP    default/web:http  1   ClusterIP            1       0            10.244.0.3:8080#2\n",
			"2   10.244.0.3:8080  TCP    active  10.96.0.50:80/TCP 10.96.0.50:80/TCP(internal)\n",
		}},
		{"json: the internal scope under internal", mapsFixture{services: web(lbmap.FlagClusterIP | lbmap.FlagTwoScopes), backends: bs, names: names}, JSON, []string{
			`"internal": {`, `"flags": "ClusterIP|TwoScopes"`,
		}},
		{"an internal scope the default master does not name", mapsFixture{services: web(lbmap.FlagClusterIP), backends: bs, names: names}, Table, []string{
			"PROBLEM: unused: the default master lacks TwoScopes",
		}},
		{"an internal scope without a default master", mapsFixture{services: orphan, names: names}, Table, []string{
			"10.96.0.50:80(internal)", "PROBLEM: no socket reaches it",
		}},
		{"TwoScopes without an internal master", mapsFixture{services: missing, names: names}, Table, []string{
			"PROBLEM: TwoScopes is set but the internal scope has no master entry",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, tc.f, tc.format)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}

// A frontend with every slot in use (65,535) is listed whole: a 16-bit loop
// counter would wrap and never end.
func TestFullFrontendIsListed(t *testing.T) {
	mem := lbmap.NewMemoryTables(nil)
	fe := key("10.96.0.70", 80, 6, lbmap.ScopeDefault, 0)
	const n = 65535
	keys, vals := []lbmap.ServiceKey{fe}, []lbmap.ServiceValue{master(1, n, 0, lbmap.FlagClusterIP)}
	for slot := 1; slot <= n; slot++ {
		k := fe
		k.Slot = uint16(slot)
		keys, vals = append(keys, k), append(vals, lbmap.ServiceValue{BackendId: 1, ServiceId: 1})
	}
	if errs := mem.Services.Update(keys, vals); len(errs) > 0 {
		t.Fatal(errs)
	}
	if errs := mem.Backends.Update([]uint32{1}, []lbmap.Backend{backend("10.244.0.2", 8080, 6, lbmap.BackendActive)}); len(errs) > 0 {
		t.Fatal(errs)
	}
	done := make(chan []ServiceView, 1)
	go func() {
		views, _ := services(mem.Tables())
		done <- views
	}()
	select {
	case views := <-done:
		if len(views) != 1 || len(views[0].Backends) != n {
			t.Errorf("got %d views, the first with %d backends; want one with %d", len(views), len(views[0].Backends), n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("listing a frontend of 65,535 slots did not end")
	}
}
