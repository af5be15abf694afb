package k8s

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/source"
)

// Labels that make kube-proxy leave an object alone; socklb does the same.
const (
	// A Service handled by another proxy.
	labelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// Endpoints of a headless Service.
	labelHeadless = "service.kubernetes.io/headless"
)

// byServiceIndex indexes EndpointSlices by the Service they belong to.
const byServiceIndex = "service"

// Source watches the API server. It implements source.Incremental.
type Source struct {
	log       *zap.Logger
	nodeName  string
	factories []informers.SharedInformerFactory
	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	svcLister corelisters.ServiceLister
	epsLister discoverylisters.EndpointSliceLister
	nodeList  corelisters.NodeLister
	tracker   *source.ChangeTracker
	// cidrs watches the ServiceCIDR objects (networking.k8s.io/v1). It is
	// not waited for: an API server without them leaves the agent without
	// fail-fast refusals of unallocated addresses, and nothing else.
	cidrs      cache.SharedIndexInformer
	cidrLister networkinglisters.ServiceCIDRLister
}

var _ source.Incremental = (*Source)(nil)

// NewSource sets up the informers; Run starts them.
func NewSource(client kubernetes.Interface, nodeName string, log *zap.Logger) (*Source, error) {
	notOurs, err := labels.Parse("!" + labelServiceProxyName + ",!" + labelHeadless)
	if err != nil {
		return nil, fmt.Errorf("build label selector: %w", err)
	}
	sliceSelector, err := labels.Parse(discoveryv1.LabelServiceName + ",!" + labelServiceProxyName + ",!" + labelHeadless)
	if err != nil {
		return nil, fmt.Errorf("build label selector: %w", err)
	}
	withLabels := func(sel labels.Selector) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() })
	}
	// No periodic informer resync: the agent's own full resync covers drift
	// in the maps, and the objects themselves come from the watch.
	svcFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, withLabels(notOurs))
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(client, 0, withLabels(sliceSelector))
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", nodeName).String()
		}))

	cidrFactory := informers.NewSharedInformerFactoryWithOptions(client, 0)

	s := &Source{
		log:        log,
		nodeName:   nodeName,
		factories:  []informers.SharedInformerFactory{svcFactory, sliceFactory, nodeFactory, cidrFactory},
		services:   svcFactory.Core().V1().Services().Informer(),
		slices:     sliceFactory.Discovery().V1().EndpointSlices().Informer(),
		nodes:      nodeFactory.Core().V1().Nodes().Informer(),
		svcLister:  svcFactory.Core().V1().Services().Lister(),
		epsLister:  sliceFactory.Discovery().V1().EndpointSlices().Lister(),
		nodeList:   nodeFactory.Core().V1().Nodes().Lister(),
		tracker:    source.NewChangeTracker(time.Now),
		cidrs:      cidrFactory.Networking().V1().ServiceCIDRs().Informer(),
		cidrLister: cidrFactory.Networking().V1().ServiceCIDRs().Lister(),
	}
	if err := s.slices.AddIndexers(cache.Indexers{byServiceIndex: sliceServiceIndex}); err != nil {
		return nil, fmt.Errorf("index EndpointSlices by Service: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{s.services, s.slices, s.nodes, s.cidrs} {
		if err := inf.SetTransform(trimForCache); err != nil {
			return nil, fmt.Errorf("set informer transform: %w", err)
		}
	}
	return s, nil
}

// trimForCache drops what socklb never reads and what weighs most in the
// caches at 10,000 Services: managed fields, kubectl's copy of the object,
// each endpoint's reference to its pod (some 200 bytes, 30,000 of them)
// and deprecated topology, a Service's status conditions, and the parts of
// the Node's status other than its addresses.
func trimForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		if ann := m.GetAnnotations(); ann != nil {
			delete(ann, corev1.LastAppliedConfigAnnotation)
		}
	}
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		for i := range o.Endpoints {
			o.Endpoints[i].TargetRef = nil
			o.Endpoints[i].DeprecatedTopology = nil
		}
	case *corev1.Service:
		o.Status.Conditions = nil
	case *corev1.Node:
		o.Status = corev1.NodeStatus{Addresses: o.Status.Addresses}
	}
	return obj, nil
}

func sliceServiceIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	if ref, ok := desired.SliceServiceRef(s); ok {
		return []string{ref.String()}, nil
	}
	return nil, nil
}

// Run starts the informers and blocks until ctx is done. The informers retry
// by themselves when the API server goes away; meanwhile the datapath keeps
// the last state.
func (s *Source) Run(ctx context.Context, changed func()) error {
	if _, err := s.services.AddEventHandler(handlers(s.tracker.ServiceUpdate, changed)); err != nil {
		return fmt.Errorf("watch Services: %w", err)
	}
	if _, err := s.slices.AddEventHandler(handlers(s.tracker.EndpointSliceUpdate, changed)); err != nil {
		return fmt.Errorf("watch EndpointSlices: %w", err)
	}
	if _, err := s.nodes.AddEventHandler(handlers(s.nodeUpdate, changed)); err != nil {
		return fmt.Errorf("watch Node %s: %w", s.nodeName, err)
	}
	// Any change of a ServiceCIDR asks for a sync: the agent reads them
	// all (ServiceCIDRs) and every sync writes the fail-fast trie.
	if _, err := s.cidrs.AddEventHandler(handlers(func(_, _ *networkingv1.ServiceCIDR) bool { return true }, changed)); err != nil {
		return fmt.Errorf("watch ServiceCIDRs: %w", err)
	}
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), s.services.HasSynced, s.slices.HasSynced, s.nodes.HasSynced) {
		return ctx.Err()
	}
	s.log.Info("informers synced", zap.Duration(logfield.Took, time.Since(start)))
	changed()
	<-ctx.Done()
	for _, f := range s.factories {
		f.Shutdown()
	}
	return nil
}

// handlers turns informer callbacks into (previous, current) records.
func handlers[T any](update func(previous, current *T) bool, changed func()) cache.ResourceEventHandlerFuncs {
	notify := func(previous, current *T) {
		if update(previous, current) {
			changed()
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if cur, ok := obj.(*T); ok {
				notify(nil, cur)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			prev, ok1 := oldObj.(*T)
			cur, ok2 := newObj.(*T)
			if ok1 && ok2 {
				notify(prev, cur)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if prev, ok := obj.(*T); ok {
				notify(prev, nil)
			}
		},
	}
}

// nodeUpdate records a change of the agent's Node as the desired state
// reads it: a change of its zone label or addresses rebuilds everything,
// other labels and the status churn (heartbeats, conditions) nothing.
func (s *Source) nodeUpdate(previous, current *corev1.Node) bool {
	if n := cmp.Or(current, previous); n != nil && n.Name != s.nodeName {
		return false // the field selector keeps other Nodes out; a fake client does not
	}
	return s.tracker.NodeUpdate(s.nodeInfo(previous, false), s.nodeInfo(current, true))
}

// nodeInfo reads a Node, nil when absent; report logs what it left out.
func (s *Source) nodeInfo(node *corev1.Node, report bool) *desired.NodeInfo {
	if node == nil {
		return nil
	}
	info, err := NodeInfoFromNode(node)
	if err != nil && report {
		s.log.Warn("leave out node addresses", zap.String(logfield.Node, node.Name), zap.Error(err))
	}
	return &info
}

// HasSynced reports whether the three informers listed everything once.
func (s *Source) HasSynced() bool {
	return s.services.HasSynced() && s.slices.HasSynced() && s.nodes.HasSynced()
}

// Snapshot lists every object from the informers' caches.
func (s *Source) Snapshot() source.Snapshot {
	svcs, _ := s.svcLister.List(labels.Everything())
	slices, _ := s.epsLister.List(labels.Everything())
	node, err := s.nodeList.Get(s.nodeName)
	if err != nil && !apierrors.IsNotFound(err) {
		s.log.Warn("read own Node", zap.Error(err))
	}

	return source.Snapshot{Services: svcs, EndpointSlices: slices, Node: s.nodeInfo(node, false)}
}

// ServiceCIDRs are the CIDRs of every ServiceCIDR object, as kube-proxy
// reads them (its ServiceCIDRConfig): one that does not parse is logged
// and left out.
func (s *Source) ServiceCIDRs() []netip.Prefix {
	objs, err := s.cidrLister.List(labels.Everything())
	if err != nil {
		s.log.Warn("list ServiceCIDRs", zap.Error(err))
		return nil
	}
	var out []netip.Prefix
	for _, o := range objs {
		for _, c := range o.Spec.CIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				s.log.Warn("leave out service cidr", zap.String(logfield.Object, "ServiceCIDR "+o.Name), zap.Error(err))
				continue
			}
			out = append(out, p)
		}
	}
	return out
}

// TakeChanges returns what changed since the last call.
func (s *Source) TakeChanges() source.Changes {
	return s.tracker.TakeChanges()
}

// ChangeCounts returns the change tracker's figures (source.ChangeCounter).
func (s *Source) ChangeCounts() source.ChangeCounts { return s.tracker.ChangeCounts() }

// Node returns the agent's Node from the cache, nil while it is not known:
// the health check reads whether the node is being deleted.
func (s *Source) Node() *corev1.Node {
	node, err := s.nodeList.Get(s.nodeName)
	if err != nil {
		return nil
	}
	return node
}

// Objects returns a Service and its slices from the caches.
func (s *Source) Objects(ref desired.ServiceRef) (*corev1.Service, []*discoveryv1.EndpointSlice) {
	svc, err := s.svcLister.Services(ref.Namespace).Get(ref.Name)
	if err != nil {
		svc = nil
	}
	objs, _ := s.slices.GetIndexer().ByIndex(byServiceIndex, ref.String())
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if eps, ok := o.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, eps)
		}
	}
	return svc, slices
}
