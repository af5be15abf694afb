package dir

import (
	"fmt"
	"strings"
	"testing"
)

func TestDecodeStoredReusesUnchangedDocuments(t *testing.T) {
	const n = indexedDocuments // Services, each with its slice: twice as many documents
	file := func(changed int) string {
		var b strings.Builder
		for i := range n {
			ip := i
			if i == changed {
				ip = 200
			}
			b.WriteString(serviceWithSlice(fmt.Sprintf("svc-%03d", i), ip) + "---\n")
		}
		return b.String()
	}
	first, _, index, err := decodeStored("big.yaml", []byte(file(-1)), nil, nil, indexedDocuments)
	if err != nil {
		t.Fatal(err)
	}
	testCases := []struct {
		name        string
		content     string
		wantDecoded []string // objects decoded again, not taken from the first version
	}{
		{"the same text decodes nothing again", file(-1), nil},
		{"a change to one Service and its slice decodes their documents only", file(7), []string{"svc-007", "svc-007-1"}},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, _, err := decodeStored("big.yaml", []byte(tc.content), first, index, indexedDocuments)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.services) != n || len(got.slices) != n {
				t.Fatalf("%d Services and %d slices, want %d of each", len(got.services), len(got.slices), n)
			}
			var decoded []string
			for i, svc := range got.services {
				if &svc.raw[0] != &first.services[i].raw[0] {
					decoded = append(decoded, svc.name)
				}
				if slice := got.slices[i]; &slice.raw[0] != &first.slices[i].raw[0] {
					decoded = append(decoded, slice.name)
				}
			}
			if fmt.Sprint(decoded) != fmt.Sprint(tc.wantDecoded) {
				t.Errorf("decoded again: %v, want %v", decoded, tc.wantDecoded)
			}
			if ip := got.services[7].service().Spec.ClusterIP; tc.wantDecoded != nil && ip != "10.96.0.201" {
				t.Errorf("changed Service has clusterIP %s, want 10.96.0.201", ip)
			}
		})
	}
}
