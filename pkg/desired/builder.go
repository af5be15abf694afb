package desired

import (
	"cmp"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Builder keeps the desired state of every Service and updates it one
// Service at a time, so that a change costs what that Service costs, not what
// the whole cluster does. Its result equals Build over the same objects
// whenever no two Services claim one frontend; when they do, the claim that
// was there first keeps it (see Update), which a Build from scratch can only
// approximate by creationTimestamp.
type Builder struct {
	opts   Options
	state  *State
	builds map[ServiceRef]*serviceBuild
	// rivals lists, per contested frontend, the Services claiming it besides
	// its owner (the Service whose entry State holds), in claimOrder. A
	// frontend that one Service claims, nearly every one, has none: a list
	// of claimants per frontend cost 5 MB at 30,000 Services.
	rivals map[Frontend][]ServiceRef
	// held is what Hold was given, for the next Reset.
	held map[Frontend]ServiceRef
	// unused holds, per Service that does not exist, its EndpointSlices'
	// names: they translate nothing. Slices naming no Service are under
	// the namespace with an empty name.
	unused map[ServiceRef][]string
	// serviceCIDRs is what SetServiceCIDRs was given last.
	serviceCIDRs []netip.Prefix
}

// UnusedSlice is an EndpointSlice that translates nothing because the
// Service it belongs to (Service, "" when it names none) does not exist.
type UnusedSlice struct {
	Namespace, Name, Service string
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
// EndpointSlices on node. Slices of a Service not listed translate nothing
// and are left out. It is ResetEach over the objects grouped by Service.
func (x *Builder) Reset(node NodeInfo, services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) {
	x.ResetEach(node, GroupByService(services, endpointSlices))
}

// ResetEach replaces everything with the state on node of objects: each
// Service with the EndpointSlices that name it and, with a nil Service, the
// slices of Services that do not exist (they translate nothing). It is the
// one full build: Reset, Build and the agent's first build and rebuilds
// after a Node change all come here, and a source that keeps its objects
// encoded can decode them one Service at a time for it, so that a full
// build never holds every object decoded at once. Of the past it keeps only
// who owns each frontend: an owner that still claims its frontend keeps it,
// so that a rebuild never hands a running Service's traffic to a newcomer;
// every other frontend goes to its first claimant by claimOrder.
func (x *Builder) ResetEach(node NodeInfo, objects iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice]) {
	previous, held := x.state, x.held
	previousOwner := func(fe Frontend) (ServiceRef, bool) {
		if previous != nil {
			if e := previous.Frontends[fe]; e != nil {
				return e.Name.ref(), true
			}
		}
		ref, ok := held[fe]
		return ref, ok
	}
	x.held = nil
	x.state = &State{
		Frontends:    map[Frontend]*FrontendEntry{},
		Node:         node,
		HealthChecks: map[ServiceRef]HealthCheck{},
		SNAT:         snatConfig(node, x.opts),
		ServiceCIDRs: x.serviceCIDRs,
	}
	x.builds = map[ServiceRef]*serviceBuild{}
	x.rivals = map[Frontend][]ServiceRef{}
	x.unused = map[ServiceRef][]string{}
	for svc, endpointSlices := range objects {
		if svc == nil {
			x.addUnused(endpointSlices)
			continue
		}
		ref := ServiceRef{Namespace: svc.Namespace, Name: svc.Name}
		if _, ok := x.builds[ref]; ok {
			x.Update(ref, svc, endpointSlices) // listed twice: the last wins, as with Update
			continue
		}
		b := buildService(ServiceViewOf(svc), endpointSlices, node, x.opts)
		// The first claimant holds a frontend until the claims are all in.
		x.builds[ref] = b
		x.addHealthCheck(ref, b)
		for _, s := range b.frontends {
			if _, held := x.state.Frontends[s.Frontend]; held {
				x.rivals[s.Frontend] = append(x.rivals[s.Frontend], ref)
			} else {
				x.state.Frontends[s.Frontend] = s
			}
		}
	}
	for fe, rivals := range x.rivals {
		claimants := rivals
		if first, ok := x.owner(fe); ok {
			claimants = append(claimants, first)
		}
		slices.SortFunc(claimants, x.claimOrder)
		owner := claimants[0]
		if held, ok := previousOwner(fe); ok && slices.Contains(claimants, held) {
			owner = held
		}
		x.state.Frontends[fe] = x.builds[owner].frontend(fe)
		x.rivals[fe] = slices.DeleteFunc(claimants, func(r ServiceRef) bool { return r == owner })
	}
}

// GroupByService is services with their slices one Service at a time, then
// the slices of Services not among services with a nil Service: what
// ResetEach reads.
func GroupByService(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) iter.Seq2[*corev1.Service, []*discoveryv1.EndpointSlice] {
	return func(yield func(*corev1.Service, []*discoveryv1.EndpointSlice) bool) {
		index := indexEndpointSlices(endpointSlices)
		exists := make(map[ServiceRef]bool, len(services))
		for _, svc := range services {
			if svc == nil {
				continue
			}
			ref := ServiceRef{Namespace: svc.Namespace, Name: svc.Name}
			exists[ref] = true
			if !yield(svc, index[ref]) {
				return
			}
		}
		var orphans []*discoveryv1.EndpointSlice
		for _, s := range endpointSlices {
			if s == nil {
				continue
			}
			if ref, ok := SliceServiceRef(s); !ok || !exists[ref] {
				orphans = append(orphans, s)
			}
		}
		if len(orphans) > 0 {
			yield(nil, orphans)
		}
	}
}

// addUnused records endpointSlices as slices whose Service does not exist,
// under that Service (under the namespace with an empty name for a slice
// that names none).
func (x *Builder) addUnused(endpointSlices []*discoveryv1.EndpointSlice) {
	for _, s := range endpointSlices {
		if s == nil {
			continue
		}
		ref, _ := SliceServiceRef(s)
		ref.Namespace = s.Namespace
		x.unused[ref] = append(x.unused[ref], s.Name)
	}
}

// Hold records who owned each frontend before this Builder existed (the
// Service the pinned maps name, after an agent restart): the next Reset
// keeps each frontend with that Service if it still claims it, as if the
// Builder had built it, so that a restart does not hand a running
// Service's frontend to a newcomer that an older creationTimestamp or an
// earlier name would otherwise favour.
func (x *Builder) Hold(owners map[Frontend]ServiceRef) {
	x.held = owners
}

// SetServiceCIDRs sets the Service CIDRs of the state (State.ServiceCIDRs):
// they come from the ServiceCIDR objects or the flags, and change no
// frontend. It reports whether they changed.
func (x *Builder) SetServiceCIDRs(cidrs []netip.Prefix) bool {
	norm := make([]netip.Prefix, 0, len(cidrs))
	for _, p := range cidrs {
		if p.IsValid() {
			norm = append(norm, p.Masked())
		}
	}
	slices.SortFunc(norm, comparePrefixes)
	norm = slices.Compact(norm)
	if slices.Equal(norm, x.serviceCIDRs) {
		return false
	}
	x.serviceCIDRs = norm
	x.state.ServiceCIDRs = norm
	return true
}

// Node is the node the state is built for.
func (x *Builder) Node() NodeInfo { return x.state.Node }

// Options are the options the builder was made with.
func (x *Builder) Options() Options { return x.opts }

// Update rebuilds Service ref from svc (nil when it was deleted), of which
// it reads only the ServiceView, and the EndpointSlices that belong to it,
// and returns the frontends whose entry in State changed (added, changed or
// removed). A frontend stays with its owner as long as the owner claims it,
// whoever else claims it later; a frontend without an owner goes to its
// first claimant by claimOrder.
func (x *Builder) Update(ref ServiceRef, svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) []Frontend {
	touched := map[Frontend]bool{}
	x.unclaim(ref, touched)
	delete(x.unused, ref)
	if svc == nil {
		for _, s := range endpointSlices {
			if s != nil {
				x.unused[ref] = append(x.unused[ref], s.Name)
			}
		}
	} else {
		b := buildService(ServiceViewOf(svc), endpointSlices, x.state.Node, x.opts)
		x.builds[ref] = b
		x.addHealthCheck(ref, b)
		for _, s := range b.frontends {
			touched[s.Frontend] = true
			// A claimant until resolve says whether it owns the frontend.
			x.rivals[s.Frontend] = append(x.rivals[s.Frontend], ref)
		}
	}
	var changed []Frontend
	for fe := range touched {
		if x.resolve(fe) {
			changed = append(changed, fe)
		}
	}
	slices.SortFunc(changed, Frontend.Compare)
	return changed
}

// UnusedSlices lists the EndpointSlices whose Service does not exist,
// sorted.
func (x *Builder) UnusedSlices() []UnusedSlice {
	var out []UnusedSlice
	for ref, names := range x.unused {
		for _, name := range names {
			out = append(out, UnusedSlice{Namespace: ref.Namespace, Name: name, Service: ref.Name})
		}
	}
	slices.SortFunc(out, func(a, b UnusedSlice) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Service, b.Service))
	})
	return out
}

// unclaim forgets Service ref, marking its frontends in touched. State
// still holds the entries of the frontends it owned until resolve.
func (x *Builder) unclaim(ref ServiceRef, touched map[Frontend]bool) {
	if old, ok := x.builds[ref]; ok {
		for _, s := range old.frontends {
			touched[s.Frontend] = true
			x.setRivals(s.Frontend, slices.DeleteFunc(x.rivals[s.Frontend], func(r ServiceRef) bool { return r == ref }))
		}
		delete(x.builds, ref)
	}
	delete(x.state.HealthChecks, ref)
}

func (x *Builder) addHealthCheck(ref ServiceRef, b *serviceBuild) {
	if b.health != nil {
		x.state.HealthChecks[ref] = *b.health
	}
}

func (x *Builder) setRivals(fe Frontend, rivals []ServiceRef) {
	if len(rivals) == 0 {
		delete(x.rivals, fe)
	} else {
		x.rivals[fe] = rivals
	}
}

// resolve gives frontend fe to its owner if the owner still claims it,
// else to its first claimant by claimOrder, keeps the other claimants as
// its rivals, and reports whether its entry changed.
func (x *Builder) resolve(fe Frontend) bool {
	have := x.state.Frontends[fe]
	claimants := x.rivals[fe]
	owner, owned := x.owner(fe)
	if owned && x.builds[owner].frontend(fe) == nil {
		owned = false // deleted, or no longer asking for fe
	}
	if owned && !slices.Contains(claimants, owner) {
		claimants = append(claimants, owner)
	}
	var want *FrontendEntry
	if len(claimants) > 0 {
		slices.SortFunc(claimants, x.claimOrder)
		if !owned {
			owner = claimants[0]
		}
		want = x.builds[owner].frontend(fe)
	}
	x.setRivals(fe, slices.DeleteFunc(claimants, func(r ServiceRef) bool { return r == owner }))
	switch {
	case want == nil && have == nil:
		return false
	case want == nil:
		delete(x.state.Frontends, fe)
		return true
	case have != nil && have.Equal(want):
		x.state.Frontends[fe] = want
		return false
	}
	x.state.Frontends[fe] = want
	return true
}

// owner is the Service whose entry State holds for fe: the state is the
// one record of who owns each frontend.
func (x *Builder) owner(fe Frontend) (ServiceRef, bool) {
	if e := x.state.Frontends[fe]; e != nil {
		return e.Name.ref(), true
	}
	return ServiceRef{}, false
}

// claimOrder orders the claims on one frontend that no owner decides: the
// older creationTimestamp first (a Service without one, as in files written
// by hand, counts as oldest), then namespace/name.
func (x *Builder) claimOrder(a, b ServiceRef) int {
	return cmp.Or(x.builds[a].created.Compare(x.builds[b].created), a.compare(b))
}

// frontend is b's entry for fe, nil when b is nil or does not claim fe.
func (b *serviceBuild) frontend(fe Frontend) *FrontendEntry {
	if b == nil {
		return nil
	}
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
		if owner, _ := x.owner(s.Frontend); owner != ref {
			errs = append(errs, &ObjectError{Kind: "Service", Namespace: ref.Namespace, Name: ref.Name,
				Err: x.conflict(s.Frontend, owner), Reason: ReasonFrontendConflict})
		}
	}
	return errs
}

// conflict says why a claim on fe was left out: owner holds it.
func (x *Builder) conflict(fe Frontend, owner ServiceRef) error {
	if created := x.builds[owner].created; !created.IsZero() {
		return fmt.Errorf("claim frontend %s: Service %s (created %s) holds it, and a frontend stays with the claim that was there first",
			fe, owner, created.UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("claim frontend %s: Service %s holds it, and a frontend stays with the claim that was there first", fe, owner)
}

// Equal reports whether two entries translate the same way.
func (s *FrontendEntry) Equal(o *FrontendEntry) bool {
	if (s.Internal == nil) != (o.Internal == nil) || (s.Internal != nil && !s.Internal.Equal(*o.Internal)) {
		return false
	}
	return s.Frontend == o.Frontend && s.Name == o.Name && s.Kind == o.Kind && s.BackendSet.Equal(o.BackendSet) &&
		s.ExternalLocal == o.ExternalLocal && slices.Equal(s.SourceRanges, o.SourceRanges) &&
		s.InternalLocal == o.InternalLocal && s.AffinityTimeout == o.AffinityTimeout
}
