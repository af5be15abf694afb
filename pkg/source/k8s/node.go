package k8s

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/socklb/socklb/pkg/desired"
)

// NodeInfoFromNode reads what the desired state needs of the agent's Node:
// its name, its zone label and its InternalIP and ExternalIP addresses, in
// the Node's order without duplicates. An address that desired.ParseAddr
// refuses is left out and named in the error; the rest is still returned.
func NodeInfoFromNode(node *corev1.Node) (desired.NodeInfo, error) {
	info := desired.NodeInfo{Name: node.Name, Zone: node.Labels[corev1.LabelTopologyZone]}
	var errs []error
	seen := map[desired.NodeAddress]bool{}
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue // host names: nothing to translate to or from
		}
		addr, err := desired.ParseAddr(a.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s address: %w", a.Type, err))
			continue
		}
		na := desired.NodeAddress{Type: a.Type, Addr: addr}
		if !seen[na] {
			seen[na] = true
			info.Addresses = append(info.Addresses, na)
		}
	}
	return info, errors.Join(errs...)
}
