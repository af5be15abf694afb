package desired

import (
	"fmt"
	"math"
)

// MaxBackends is the most backends one frontend holds in one scope, active
// and terminating together: the datapath numbers a scope's slots
// 1..count+terminating in 16 bits (lb_service_key.slot and the master's
// count and terminating, bpf/lib/lb_types.h). Kubernetes sets no such limit
// (a Service may have any number of EndpointSlices of 1,000 endpoints), so
// the builder enforces it here, the one place backends are chosen: widening
// the key would change the pinned map layout, and every upgrade would need
// `socklb cleanup`.
const MaxBackends = math.MaxUint16

// capBackends keeps the first MaxBackends of s in its order, active first,
// and returns how many it left out.
func capBackends(s BackendSet) (BackendSet, int) {
	total := len(s.Active) + len(s.Terminating)
	if total <= MaxBackends {
		return s, 0
	}
	s.Active = s.Active[:min(len(s.Active), MaxBackends):min(len(s.Active), MaxBackends)]
	keep := MaxBackends - len(s.Active)
	s.Terminating = s.Terminating[:keep:keep]
	return s, total - MaxBackends
}

// capFrontend caps e's backend sets, and says what it left out, nil when
// nothing.
func capFrontend(e *FrontendEntry) error {
	total := len(e.Active) + len(e.Terminating)
	var left int
	e.BackendSet, left = capBackends(e.BackendSet)
	msg := ""
	if left > 0 {
		msg = fmt.Sprintf("%d of %d backends left out", left, total)
	}
	if e.Internal != nil {
		internalTotal := len(e.Internal.Active) + len(e.Internal.Terminating)
		internal, internalLeft := capBackends(*e.Internal)
		e.Internal = &internal
		if internalLeft > 0 {
			if msg != "" {
				msg += ", "
			}
			msg += fmt.Sprintf("%d of %d backends for clients on the node left out", internalLeft, internalTotal)
		}
	}
	if msg == "" {
		return nil
	}
	return fmt.Errorf("program frontend %s: %s: a frontend holds at most %d backends, active and terminating together (the datapath numbers its slots in 16 bits); the first by address are kept, active ones first",
		e.Frontend, msg, MaxBackends)
}
