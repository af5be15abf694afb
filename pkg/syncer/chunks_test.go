package syncer

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
)

// A node's first sync of more than firstSyncChunk frontends runs as
// several plans; each case syncs one state onto empty maps both ways and
// wants the same maps, result and errors.
func TestFirstSyncInChunksWritesWhatOnePlanWrites(t *testing.T) {
	many := func(n int) *desired.State {
		st := state()
		for i := range n {
			// Neighbours share backends, every third frontend has an
			// internal scope and every fifth a terminating backend.
			pod := func(j int) string { return fmt.Sprintf("10.244.%d.%d", (i+j)/250, (i+j)%250+1) }
			e := svc(fmt.Sprintf("svc-%05d", i), tcp(fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), 80),
				backends(desired.TCP, 8080, pod(0), pod(1), pod(2)), nil)
			if i%5 == 0 {
				e.Terminating = backends(desired.TCP, 8080, pod(3))
			}
			if i%3 == 0 {
				twoScopes(e, backends(desired.TCP, 8080, pod(0)), nil)
			}
			st.Frontends[e.Frontend] = e
			if e.Kind == 0 {
				e.Kind = desired.ClusterIP
			}
		}
		st.SNAT = desired.SNATConfig{}
		return st
	}
	for _, tc := range []struct {
		name       string
		frontends  int
		maxEntries map[string]uint32
	}{
		{"5,000 frontends", 5000, nil},
		{"exactly two chunks", 2 * firstSyncChunk, nil},
		{"a services map that holds about half of them", 5000, map[string]uint32{lbmap.ServicesMap: 12000}},
		{"a rev_nat map that holds 3,000", 5000, map[string]uint32{lbmap.RevNatMap: 3000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := many(tc.frontends)
			chunkedMem := lbmap.NewMemoryTables(tc.maxEntries)
			onceMem := lbmap.NewMemoryTables(tc.maxEntries)
			chunked, err := NewWithTables(chunkedMem.Tables(), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			once, err := NewWithTables(onceMem.Tables(), zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			gotRes, gotErr := chunked.Sync(st)
			wantRes, wantErr := once.sync(st, nil)
			if !reflect.DeepEqual(chunkedMem, onceMem) {
				got, want := readMaps(t, chunkedMem.Tables()), readMaps(t, onceMem.Tables())
				t.Errorf("the maps differ: %d frontends in chunks, %d in one plan", len(got.frontends), len(want.frontends))
			}
			// A backend shared across a chunk boundary, terminating for one
			// chunk's frontend and active for the next's, is written twice.
			if gotRes.Upserts < wantRes.Upserts || gotRes.Upserts > wantRes.Upserts+tc.frontends/firstSyncChunk*4 ||
				!slices.Equal(gotRes.Frontends, wantRes.Frontends) || !maps.Equal(gotRes.LeftOut, wantRes.LeftOut) {
				t.Errorf("in chunks: %d upserts, %d frontend changes, left out %v; in one plan: %d, %d, %v",
					gotRes.Upserts, len(gotRes.Frontends), gotRes.LeftOut, wantRes.Upserts, len(wantRes.Frontends), wantRes.LeftOut)
			}
			if got, want := sortedLines(gotErr), sortedLines(wantErr); !slices.Equal(got, want) {
				t.Errorf("in chunks %d errors, in one plan %d; first of each: %q, %q", len(got), len(want), first(got), first(want))
			}
			// The next full sync finds nothing to do either way.
			if res, err := chunked.Sync(st); err == nil && !wroteNothing(res) {
				t.Errorf("the sync after the chunked one wrote %d entries", res.Upserts+res.Deletes)
			}
		})
	}
}

func sortedLines(err error) []string {
	if err == nil {
		return nil
	}
	return slices.Sorted(slices.Values(strings.Split(err.Error(), "\n")))
}

func first(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}
