package agent

import (
	"iter"
	"testing"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
)

// streamCountingSource is an incremental, streaming source whose changes
// a test sets; it counts the full reads of its objects.
type streamCountingSource struct {
	staticSource
	services []*corev1.Service
	changes  source.Changes
	streams  int
}

func (s *streamCountingSource) TakeChanges() source.Changes {
	c := s.changes
	s.changes = source.Changes{}
	return c
}

func (s *streamCountingSource) Objects(ref desired.ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	for _, svc := range s.services {
		if svc.Namespace == ref.Namespace && svc.Name == ref.Name {
			return svc, nil
		}
	}
	return nil, nil
}

func (s *streamCountingSource) Stream() (*desired.NodeInfo, iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice]) {
	s.streams++
	return nil, desired.GroupByService(s.services, nil)
}

// Which syncs read every object again and which diff every frontend: a
// periodic resync, a retry and a pin repair diff everything against the
// maps from the state the changes keep; only the first build and a change
// every Service reads (the Node) build it from every object.
func TestFullSyncRebuildsOnlyWhenItMust(t *testing.T) {
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	src := &streamCountingSource{services: []*corev1.Service{web}}
	rec := &recordingSyncer{}
	a := New(DefaultConfig(), src, rec, zaptest.NewLogger(t))
	steps := []struct {
		name        string
		full        bool // a periodic resync
		changes     source.Changes
		wantStreams int
		wantFull    bool
	}{
		{"the first sync builds from every object", false, source.Changes{}, 1, true},
		{"a change syncs its Service only", false, source.Changes{Services: []desired.ServiceRef{{Namespace: "default", Name: "web"}}}, 1, false},
		{"a periodic resync diffs everything and reads no object", true, source.Changes{}, 1, true},
		{"a resync with a change reads only the changed Service", true, source.Changes{Services: []desired.ServiceRef{{Namespace: "default", Name: "web"}}}, 1, true},
		{"a Node change builds from every object", false, source.Changes{All: true}, 2, true},
	}
	for _, st := range steps {
		src.changes = st.changes
		if err := a.syncOnce(st.full); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		last := rec.records[len(rec.records)-1]
		if src.streams != st.wantStreams || last.full != st.wantFull {
			t.Errorf("%s: %d full reads of the objects and a full diff %t; want %d and %t", st.name, src.streams, last.full, st.wantStreams, st.wantFull)
		}
		if len(last.frontends) != 1 {
			t.Errorf("%s: the state holds %v, want web's frontend", st.name, last.frontends)
		}
	}
}
