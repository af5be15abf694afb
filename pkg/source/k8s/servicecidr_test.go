package k8s

import (
	"context"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func serviceCIDR(name string, cidrs ...string) *networkingv1.ServiceCIDR {
	return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

// The Service CIDRs are those of every ServiceCIDR object (one that does not
// parse left out), and a change of them asks for a sync.
func TestSourceServiceCIDRs(t *testing.T) {
	client := fake.NewClientset(serviceCIDR("kubernetes", "10.96.0.0/16", "fd00:10:96::/108"), serviceCIDR("broken", "not-a-cidr"))
	src, calls := runTestSource(t, client, "node-1")
	ctx := context.Background()
	cidrs := func() []string {
		var out []string
		for _, p := range src.ServiceCIDRs() {
			out = append(out, p.String())
		}
		slices.Sort(out)
		return out
	}
	waitFor(t, "the ServiceCIDRs", func() bool { return len(cidrs()) == 2 })
	if got, want := cidrs(), []string{"10.96.0.0/16", "fd00:10:96::/108"}; !slices.Equal(got, want) {
		t.Errorf("ServiceCIDRs() = %v, want %v", got, want)
	}

	before := calls.Load()
	if _, err := client.NetworkingV1().ServiceCIDRs().Create(ctx, serviceCIDR("extra", "10.100.0.0/24"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new ServiceCIDR to be reported", func() bool { return calls.Load() > before })
	waitFor(t, "the new ServiceCIDR to be listed", func() bool { return slices.Contains(cidrs(), "10.100.0.0/24") })

	before = calls.Load()
	if err := client.NetworkingV1().ServiceCIDRs().Delete(ctx, "extra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion to be reported", func() bool { return calls.Load() > before })
	waitFor(t, "the deleted ServiceCIDR to go", func() bool { return !slices.Contains(cidrs(), "10.100.0.0/24") })
}
