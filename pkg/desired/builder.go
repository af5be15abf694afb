package desired

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Builder keeps the desired state of every Service and updates it one
// Service at a time, so that a change costs what that Service costs, not what
// the whole cluster does. Its result equals Build over the same objects.
type Builder struct {
	opts   Options
	state  *State
	builds map[ServiceRef]*serviceBuild
	// claims lists, per frontend, the Services asking for it, sorted by
	// namespace/name: the first owns it, the others are told so.
	claims map[Frontend][]ServiceRef
}

// NewBuilder starts from no Services, with the default Options.
func NewBuilder(node NodeInfo) *Builder {
	return NewBuilderWithOptions(node, Options{})
}

// NewBuilderWithOptions starts from no Services; opts hold for every later
// Reset and Update.
func NewBuilderWithOptions(node NodeInfo, opts Options) *Builder {
	x := &Builder{opts: opts}
	x.Reset(node, nil, nil)
	return x
}

// Reset replaces everything with the state of services and their
// EndpointSlices on node, as if each Service were added to a new Builder.
// Slices of a Service not listed translate nothing and are left out. It is
// the one full build: Build and the agent's full sync both come here.
func (x *Builder) Reset(node NodeInfo, services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) {
	x.state = &State{
		Frontends:    make(map[Frontend]*FrontendEntry, len(services)),
		Node:         node,
		HealthChecks: map[ServiceRef]HealthCheck{},
		SNAT:         snatConfig(node, x.opts),
	}
	x.builds = make(map[ServiceRef]*serviceBuild, len(services))
	x.claims = map[Frontend][]ServiceRef{}
	index := indexEndpointSlices(endpointSlices)
	for _, svc := range services {
		if svc == nil {
			continue
		}
		ref := ServiceRef{Namespace: svc.Namespace, Name: svc.Name}
		x.Update(ref, svc, index[ref])
	}
}

// Node is the node the state is built for.
func (x *Builder) Node() NodeInfo { return x.state.Node }

// Options are the options the builder was made with.
func (x *Builder) Options() Options { return x.opts }

// Endpoints returns the endpoints, with their locality, that the backends
// of frontend fe were chosen from; nil when no Service owns fe.
func (x *Builder) Endpoints(fe Frontend) []Endpoint {
	claimants := x.claims[fe]
	if len(claimants) == 0 {
		return nil
	}
	return x.builds[claimants[0]].endpoints[fe]
}

// Update rebuilds Service ref from svc (nil when it was deleted), of which
// it reads only the ServiceView, and the EndpointSlices that belong to it,
// and returns the frontends whose entry in State changed (added, changed or
// removed).
func (x *Builder) Update(ref ServiceRef, svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) []Frontend {
	touched := map[Frontend]bool{}
	if old, ok := x.builds[ref]; ok {
		for _, s := range old.frontends {
			touched[s.Frontend] = true
			x.claims[s.Frontend] = slices.DeleteFunc(x.claims[s.Frontend], func(r ServiceRef) bool { return r == ref })
		}
		delete(x.builds, ref)
	}
	delete(x.state.HealthChecks, ref)
	if svc != nil {
		b := buildService(ServiceViewOf(svc), endpointSlices, x.state.Node, x.opts)
		x.builds[ref] = b
		if b.health != nil {
			x.state.HealthChecks[ref] = *b.health
		}
		for _, s := range b.frontends {
			touched[s.Frontend] = true
			claimants := append(x.claims[s.Frontend], ref)
			slices.SortFunc(claimants, ServiceRef.compare)
			x.claims[s.Frontend] = claimants
		}
	}

	var changed []Frontend
	for fe := range touched {
		var want *FrontendEntry
		if claimants := x.claims[fe]; len(claimants) > 0 {
			want = x.builds[claimants[0]].frontend(fe)
		} else {
			delete(x.claims, fe)
		}
		have := x.state.Frontends[fe]
		if want == nil {
			if have != nil {
				delete(x.state.Frontends, fe)
				changed = append(changed, fe)
			}
			continue
		}
		if have == nil || !have.Equal(want) {
			x.state.Frontends[fe] = want
			changed = append(changed, fe)
		}
	}
	slices.SortFunc(changed, Frontend.Compare)
	return changed
}

func (b *serviceBuild) frontend(fe Frontend) *FrontendEntry {
	for _, s := range b.frontends {
		if s.Frontend == fe {
			return s
		}
	}
	return nil
}

// State is the current desired state. The caller must not modify it; it
// changes with the next Update.
func (x *Builder) State() *State { return x.state }

// Errors lists every problem of the current objects, ordered by Service.
func (x *Builder) Errors() []error {
	refs := make([]ServiceRef, 0, len(x.builds))
	for ref := range x.builds {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, ServiceRef.compare)
	var errs []error
	for _, ref := range refs {
		errs = append(errs, x.ErrorsOf(ref)...)
	}
	return errs
}

// ErrorsOf lists the problems of one Service.
func (x *Builder) ErrorsOf(ref ServiceRef) []error {
	b, ok := x.builds[ref]
	if !ok {
		return nil
	}
	errs := slices.Clone(b.errs)
	for _, s := range b.frontends {
		if owner := x.claims[s.Frontend][0]; owner != ref {
			errs = append(errs, &ObjectError{Kind: "Service", Namespace: ref.Namespace, Name: ref.Name,
				Err: fmt.Errorf("claim frontend %s: Service %s has it", s.Frontend, owner)})
		}
	}
	return errs
}

// Equal reports whether two entries translate the same way.
func (s *FrontendEntry) Equal(o *FrontendEntry) bool {
	if (s.Internal == nil) != (o.Internal == nil) || (s.Internal != nil && !s.Internal.Equal(*o.Internal)) {
		return false
	}
	return s.Frontend == o.Frontend && s.Name == o.Name && s.Kind == o.Kind && s.BackendSet.Equal(o.BackendSet) &&
		s.ExternalLocal == o.ExternalLocal && slices.Equal(s.SourceRanges, o.SourceRanges)
}
