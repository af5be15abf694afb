//go:build controlplane

package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socklb/socklb/tests/controlplane"
)

// The rendered manifests pass a real API server's validation and admission
// (strict field validation: an unknown or misplaced field fails).
func TestServerDryRun(t *testing.T) {
	cp := requireControlPlane(t)
	cases := []struct {
		name    string
		render  func(t testing.TB) manifests
		refused string // what the refusal names; "" when it must pass
	}{
		{name: "plain manifest", render: readPlainManifest},
		{name: "chart with custom values", render: func(t testing.TB) manifests { return renderChart(t, "--values", customValues) }},
		// The check itself: a misspelt field must not pass.
		{name: "a misspelt field is refused", render: func(t testing.TB) manifests {
			m := readPlainManifest(t)
			m.text = strings.Replace(m.text, "hostNetwork: true", "hostNetwrk: true", 1)
			return m
		}, refused: "hostNetwrk"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.render(t)
			file := filepath.Join(t.TempDir(), "manifests.yaml")
			if err := os.WriteFile(file, []byte(m.text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := kubectl(t, cp, "apply", "--dry-run=server", "--validate=strict", "-f", file)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("kubectl apply --dry-run=server accepted a manifest with %s (err %v):\n%s", tc.refused, err, out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, object := range []string{
				"serviceaccount/" + m.serviceAccount.Name,
				"clusterrole.rbac.authorization.k8s.io/" + m.clusterRole.Name,
				"clusterrolebinding.rbac.authorization.k8s.io/" + m.binding.Name,
				"daemonset.apps/" + m.daemonSet.Name,
			} {
				if !strings.Contains(out, object+" created (server dry run)") && !strings.Contains(out, object+" configured (server dry run)") &&
					!strings.Contains(out, object+" unchanged (server dry run)") {
					t.Errorf("kubectl apply --dry-run=server did not accept %s:\n%s", object, out)
				}
			}
		})
	}
}

// The agent's ServiceAccount may read what the agent watches and write
// Events, and nothing else.
func TestRBAC(t *testing.T) {
	cp := requireControlPlane(t)
	m := readPlainManifest(t)
	if _, err := kubectl(t, cp, "apply", "-f", filepath.Join(repoRoot(t), plainManifest)); err != nil {
		t.Fatal(err)
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", m.serviceAccount.Namespace, m.serviceAccount.Name)
	// The authorizer learns of a new binding through its informers.
	waitAllowed(t, cp, user, "list", "services")

	cases := []struct {
		verb, resource string
		allowed        bool
	}{
		{"get", "services", true},
		{"list", "services", true},
		{"watch", "services", true},
		{"get", "endpointslices.discovery.k8s.io", true},
		{"list", "endpointslices.discovery.k8s.io", true},
		{"watch", "endpointslices.discovery.k8s.io", true},
		{"get", "nodes", true},
		{"list", "nodes", true},
		{"watch", "nodes", true},
		{"list", "servicecidrs.networking.k8s.io", true},
		{"watch", "servicecidrs.networking.k8s.io", true},
		{"create", "events", true},
		{"patch", "events", true},
		{"create", "events.events.k8s.io", true},
		{"patch", "events.events.k8s.io", true},

		{"get", "secrets", false},
		{"list", "secrets", false},
		{"get", "configmaps", false},
		{"list", "configmaps", false},
		{"create", "services", false},
		{"update", "services", false},
		{"patch", "services", false},
		{"delete", "services", false},
		{"update", "services/status", false},
		{"create", "endpointslices.discovery.k8s.io", false},
		{"update", "endpointslices.discovery.k8s.io", false},
		{"delete", "endpointslices.discovery.k8s.io", false},
		{"update", "nodes", false},
		{"delete", "nodes", false},
		{"create", "servicecidrs.networking.k8s.io", false},
		{"delete", "servicecidrs.networking.k8s.io", false},
		{"list", "endpoints", false},
		{"list", "pods", false},
		{"create", "pods", false},
		{"delete", "events", false},
		{"create", "serviceaccounts/token", false},
	}
	for _, tc := range cases {
		want := "denied"
		if tc.allowed {
			want = "allowed"
		}
		t.Run(fmt.Sprintf("%s %s %s", want, tc.verb, tc.resource), func(t *testing.T) {
			allowed, err := canI(t, cp, user, tc.verb, tc.resource)
			if err != nil {
				t.Fatal(err)
			}
			if allowed != tc.allowed {
				t.Errorf("kubectl auth can-i %s %s --as=%s: allowed = %v, want %v", tc.verb, tc.resource, user, allowed, tc.allowed)
			}
		})
	}
}

// canI asks the API server whether user may do verb on resource in every
// namespace.
func canI(t *testing.T, cp *controlplane.ControlPlane, user, verb, resource string) (bool, error) {
	t.Helper()
	out, err := kubectl(t, cp, "auth", "can-i", verb, resource, "--all-namespaces", "--as="+user)
	// can-i says "no" with exit status 1; any other failure has no answer.
	switch strings.TrimSpace(out) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("kubectl auth can-i %s %s: no answer (%q): %v", verb, resource, out, err)
}

func waitAllowed(t *testing.T, cp *controlplane.ControlPlane, user, verb, resource string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		allowed, err := canI(t, cp, user, verb, resource)
		if allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the applied ClusterRoleBinding never let %s %s %s (last: %v)", user, verb, resource, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func kubectl(t *testing.T, cp *controlplane.ControlPlane, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	return cp.Kubectl(ctx, args...)
}
