//go:build controlplane

package deploy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// manifests are the objects of one rendering, one of each kind the chart
// makes.
type manifests struct {
	text           string
	serviceAccount *corev1.ServiceAccount
	clusterRole    *rbacv1.ClusterRole
	binding        *rbacv1.ClusterRoleBinding
	daemonSet      *appsv1.DaemonSet
}

// templateArgs renders the chart as deploy/socklb.yaml is rendered, plus
// extra (values files, --set).
func templateArgs(extra ...string) []string {
	return append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace}, extra...)
}

// renderChart runs helm template and decodes what it printed.
func renderChart(t testing.TB, extra ...string) manifests {
	t.Helper()
	out, err := runHelm(t, templateArgs(extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifests(out)
	if err != nil {
		t.Fatalf("decoding helm template's output: %v\n%s", err, out)
	}
	return m
}

// readPlainManifest decodes deploy/socklb.yaml.
func readPlainManifest(t testing.TB) manifests {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), plainManifest))
	if err != nil {
		t.Fatalf("reading the plain manifest: %v", err)
	}
	m, err := decodeManifests(string(data))
	if err != nil {
		t.Fatalf("decoding %s: %v", plainManifest, err)
	}
	return m
}

// decodeManifests decodes a multi-document YAML stream into typed objects,
// refusing kinds the chart does not make and a kind made twice.
func decodeManifests(text string) (manifests, error) {
	m := manifests{text: text}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	decoder := scheme.Codecs.UniversalDeserializer()
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("splitting YAML documents: %w", err)
		}
		if onlyComments(doc) {
			continue
		}
		object, kind, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return m, fmt.Errorf("decoding a document: %w\n%s", err, doc)
		}
		if err := m.add(object, kind.Kind); err != nil {
			return m, err
		}
	}
	if m.serviceAccount == nil || m.clusterRole == nil || m.binding == nil || m.daemonSet == nil {
		return m, fmt.Errorf("want one each of ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet, got %s", m.kinds())
	}
	return m, nil
}

func (m *manifests) add(object any, kind string) error {
	duplicate := false
	switch o := object.(type) {
	case *corev1.ServiceAccount:
		duplicate, m.serviceAccount = m.serviceAccount != nil, o
	case *rbacv1.ClusterRole:
		duplicate, m.clusterRole = m.clusterRole != nil, o
	case *rbacv1.ClusterRoleBinding:
		duplicate, m.binding = m.binding != nil, o
	case *appsv1.DaemonSet:
		duplicate, m.daemonSet = m.daemonSet != nil, o
	default:
		return fmt.Errorf("unexpected kind %s in the rendered manifests", kind)
	}
	if duplicate {
		return fmt.Errorf("two objects of kind %s in the rendered manifests", kind)
	}
	return nil
}

func (m *manifests) kinds() string {
	var kinds []string
	for kind, present := range map[string]bool{
		"ServiceAccount":     m.serviceAccount != nil,
		"ClusterRole":        m.clusterRole != nil,
		"ClusterRoleBinding": m.binding != nil,
		"DaemonSet":          m.daemonSet != nil,
	} {
		if present {
			kinds = append(kinds, kind)
		}
	}
	if len(kinds) == 0 {
		return "none"
	}
	return strings.Join(kinds, ", ")
}

// agent is the DaemonSet's one container.
func (m manifests) agent(t testing.TB) corev1.Container {
	t.Helper()
	containers := m.daemonSet.Spec.Template.Spec.Containers
	if len(containers) != 1 || containers[0].Name != "agent" {
		t.Fatalf("the DaemonSet has containers %v, want exactly one named agent", containerNames(containers))
	}
	return containers[0]
}

func containerNames(containers []corev1.Container) []string {
	var names []string
	for _, c := range containers {
		names = append(names, c.Name)
	}
	return names
}

func onlyComments(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && line != "---" {
			return false
		}
	}
	return true
}
