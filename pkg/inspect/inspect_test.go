package inspect

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
