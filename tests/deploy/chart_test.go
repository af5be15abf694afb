//go:build controlplane

package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

const customValues = "tests/deploy/testdata/custom-values.yaml"

func TestHelmLint(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"default values", nil},
		{"custom values", []string{"--values", customValues}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint did not pass the chart:\n%s", out)
			}
		})
	}
}

// renderWant is what one rendering's DaemonSet must say.
type renderWant struct {
	image, pullPolicy string
	args              []string
	resources         corev1.ResourceRequirements
	metricsPort       int32
	healthzPort       int32
	env               map[string]string // plain env values beyond the downward API's
	priorityClassName string
	nodeSelector      map[string]string
	tolerations       []corev1.Toleration
	affinity          bool
	serviceAccount    string
	hostPaths         map[string]string // volume name -> host path
	annotations       map[string]string
	pullSecrets       []corev1.LocalObjectReference
}

func TestHelmTemplate(t *testing.T) {
	appVersion := chartAppVersion(t)
	cases := []struct {
		name string
		args []string
		want renderWant
	}{{
		name: "default values",
		want: renderWant{
			image:      "docker.io/socklb/socklb:" + appVersion,
			pullPolicy: "IfNotPresent",
			args: []string{"agent", "--log-level=info", "--bpffs=/sys/fs/bpf/socklb", "--cgroup=/run/socklb/cgroupv2",
				"--metrics-address=$(HOST_IP):10249", "--healthz-address=0.0.0.0:10256"},
			resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			metricsPort: 10249, healthzPort: 10256,
			priorityClassName: "system-node-critical",
			nodeSelector:      map[string]string{"kubernetes.io/os": "linux"},
			tolerations:       []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			serviceAccount:    "socklb",
			hostPaths:         map[string]string{"bpffs": "/sys/fs/bpf", "cgroup2": "/sys/fs/cgroup"},
		},
	}, {
		name: "custom values",
		args: []string{"--values", customValues},
		want: renderWant{
			image:      "registry.example.com/net/socklb:v9.9.9-test",
			pullPolicy: "Always",
			args: []string{"agent", "--log-level=debug", "--bpffs=/sys/fs/bpf/socklb", "--cgroup=/run/socklb/cgroupv2",
				"--metrics-address=127.0.0.1:9249", "--healthz-address=0.0.0.0:10266",
				"--map-size-services=524288", "--devices=eth0,bond0", "--external-ip-allow=203.0.113.0/24,2001:db8:ff::/64",
				"--nodeport-addresses=192.0.2.0/24", "--xdp-mode=generic", "--snat-ports=40000-50000"},
			resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			},
			metricsPort: 9249, healthzPort: 10266,
			env:               map[string]string{"KUBERNETES_SERVICE_HOST": "192.0.2.10", "KUBERNETES_SERVICE_PORT": "8443"},
			priorityClassName: "system-cluster-critical",
			// Helm merges maps into the defaults ("kubernetes.io/os": null
			// would drop the default key).
			nodeSelector:   map[string]string{"kubernetes.io/os": "linux", "node-role.kubernetes.io/worker": ""},
			tolerations:    []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "network", Effect: corev1.TaintEffectNoSchedule}},
			affinity:       true,
			serviceAccount: "socklb-agent",
			hostPaths:      map[string]string{"bpffs": "/run/bpf", "cgroup2": "/sys/fs/cgroup/unified"},
			annotations:    map[string]string{"prometheus.io/scrape": "true"},
			pullSecrets:    []corev1.LocalObjectReference{{Name: "regcred"}},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := renderChart(t, tc.args...)
			checkNodeAgentShape(t, m)
			checkAgentValues(t, m, tc.want)
			checkPodValues(t, m, tc.want)
		})
	}
}

// checkNodeAgentShape checks what no value changes: a host-network agent on
// every node, replaced one node at a time, with the host's bpffs and cgroup2
// and its node's name and address.
func checkNodeAgentShape(t *testing.T, m manifests) {
	t.Helper()
	spec := m.daemonSet.Spec
	if spec.UpdateStrategy.Type != "RollingUpdate" || spec.UpdateStrategy.RollingUpdate == nil {
		t.Fatalf("updateStrategy = %+v, want RollingUpdate", spec.UpdateStrategy)
	}
	rolling := spec.UpdateStrategy.RollingUpdate
	if rolling.MaxUnavailable == nil || rolling.MaxUnavailable.String() != "1" || rolling.MaxSurge == nil || rolling.MaxSurge.String() != "0" {
		t.Errorf("rollingUpdate = maxUnavailable %v, maxSurge %v; want 1 and 0 (two agents on a node would fight over the pins)", rolling.MaxUnavailable, rolling.MaxSurge)
	}
	if !spec.Template.Spec.HostNetwork {
		t.Error("hostNetwork is off: XDP, tc and the health servers need the node's network")
	}
	if spec.Template.Spec.DNSPolicy != "Default" {
		t.Errorf("dnsPolicy = %q, want Default: cluster DNS is a ClusterIP, untranslated until the agent runs", spec.Template.Spec.DNSPolicy)
	}
	agent := m.agent(t)
	wantEnv := map[string]string{"NODE_NAME": "spec.nodeName", "HOST_IP": "status.hostIP"}
	for _, env := range agent.Env {
		if path, ok := wantEnv[env.Name]; ok {
			if env.ValueFrom == nil || env.ValueFrom.FieldRef == nil || env.ValueFrom.FieldRef.FieldPath != path {
				t.Errorf("env %s = %+v, want the downward API's %s", env.Name, env.ValueFrom, path)
			}
			delete(wantEnv, env.Name)
		}
	}
	if len(wantEnv) > 0 {
		t.Errorf("env lacks %v", wantEnv)
	}
	mounts := map[string]string{}
	for _, mount := range agent.VolumeMounts {
		mounts[mount.Name] = mount.MountPath
	}
	if want := map[string]string{"bpffs": "/sys/fs/bpf", "cgroup2": "/run/socklb/cgroupv2"}; !equality.Semantic.DeepEqual(mounts, want) {
		t.Errorf("volume mounts = %v, want %v (the agent's --bpffs and --cgroup live there)", mounts, want)
	}
	sc := agent.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("securityContext = %+v, want privileged false and capabilities dropping ALL", sc)
	}
}

// checkAgentValues checks the values that reach the agent's container.
func checkAgentValues(t *testing.T, m manifests, want renderWant) {
	t.Helper()
	agent := m.agent(t)
	if agent.Image != want.image || string(agent.ImagePullPolicy) != want.pullPolicy {
		t.Errorf("image = %s (%s), want %s (%s)", agent.Image, agent.ImagePullPolicy, want.image, want.pullPolicy)
	}
	if !slices.Equal(agent.Args, want.args) {
		t.Errorf("args:\n got %q\nwant %q", agent.Args, want.args)
	}
	if !equality.Semantic.DeepEqual(agent.Resources, want.resources) {
		t.Errorf("resources = %+v, want %+v", agent.Resources, want.resources)
	}
	ports := map[string]int32{}
	for _, p := range agent.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if wantPorts := map[string]int32{"metrics": want.metricsPort, "healthz": want.healthzPort}; !equality.Semantic.DeepEqual(ports, wantPorts) {
		t.Errorf("ports = %v, want %v", ports, wantPorts)
	}
	for _, probe := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", agent.LivenessProbe, "/livez"}, {"readiness", agent.ReadinessProbe, "/healthz"}} {
		if probe.probe == nil || probe.probe.HTTPGet == nil {
			t.Errorf("%s probe = %+v, want an HTTP GET of %s", probe.name, probe.probe, probe.path)
			continue
		}
		get := probe.probe.HTTPGet
		if get.Path != probe.path || get.Port.String() != "healthz" {
			t.Errorf("%s probe asks %s on port %s, want %s on the healthz port", probe.name, get.Path, get.Port.String(), probe.path)
		}
	}
	plainEnv := map[string]string{}
	for _, env := range agent.Env {
		if env.ValueFrom == nil {
			plainEnv[env.Name] = env.Value
		}
	}
	if len(want.env) > 0 || len(plainEnv) > 0 {
		if !equality.Semantic.DeepEqual(plainEnv, want.env) {
			t.Errorf("env values = %v, want %v", plainEnv, want.env)
		}
	}
}

// checkPodValues checks the values that reach the pod and the RBAC objects.
func checkPodValues(t *testing.T, m manifests, want renderWant) {
	t.Helper()
	pod := m.daemonSet.Spec.Template
	if pod.Spec.PriorityClassName != want.priorityClassName {
		t.Errorf("priorityClassName = %q, want %q", pod.Spec.PriorityClassName, want.priorityClassName)
	}
	if !equality.Semantic.DeepEqual(pod.Spec.NodeSelector, want.nodeSelector) {
		t.Errorf("nodeSelector = %v, want %v", pod.Spec.NodeSelector, want.nodeSelector)
	}
	if !equality.Semantic.DeepEqual(pod.Spec.Tolerations, want.tolerations) {
		t.Errorf("tolerations = %+v, want %+v", pod.Spec.Tolerations, want.tolerations)
	}
	if got := pod.Spec.Affinity != nil && pod.Spec.Affinity.NodeAffinity != nil; got != want.affinity {
		t.Errorf("node affinity present = %v, want %v", got, want.affinity)
	}
	if len(pod.Annotations) > 0 || len(want.annotations) > 0 {
		if !equality.Semantic.DeepEqual(pod.Annotations, want.annotations) {
			t.Errorf("pod annotations = %v, want %v", pod.Annotations, want.annotations)
		}
	}
	if !equality.Semantic.DeepEqual(pod.Spec.ImagePullSecrets, want.pullSecrets) {
		t.Errorf("imagePullSecrets = %v, want %v", pod.Spec.ImagePullSecrets, want.pullSecrets)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	if !equality.Semantic.DeepEqual(hostPaths, want.hostPaths) {
		t.Errorf("hostPath volumes = %v, want %v", hostPaths, want.hostPaths)
	}
	names := map[string]string{
		"the pod's serviceAccountName":   pod.Spec.ServiceAccountName,
		"the ServiceAccount":             m.serviceAccount.Name,
		"the ClusterRoleBinding subject": bindingSubject(m),
	}
	for what, name := range names {
		if name != want.serviceAccount {
			t.Errorf("%s is %q, want %q", what, name, want.serviceAccount)
		}
	}
	if m.binding.RoleRef.Name != m.clusterRole.Name {
		t.Errorf("the ClusterRoleBinding refers to %q, the ClusterRole is %q", m.binding.RoleRef.Name, m.clusterRole.Name)
	}
}

func bindingSubject(m manifests) string {
	if len(m.binding.Subjects) != 1 {
		return fmt.Sprintf("%d subjects", len(m.binding.Subjects))
	}
	s := m.binding.Subjects[0]
	if s.Kind != "ServiceAccount" || s.Namespace != releaseNamespace {
		return fmt.Sprintf("%s %s/%s", s.Kind, s.Namespace, s.Name)
	}
	return s.Name
}

// The plain manifest is what the chart renders with its defaults, so the
// two never drift: edit the chart and run make deploy-manifest.
func TestPlainManifestIsChartDefault(t *testing.T) {
	rendered, err := runHelm(t, templateArgs()...)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(t), plainManifest))
	if err != nil {
		t.Fatalf("reading the plain manifest: %v", err)
	}
	header, body := splitHeader(string(data))
	if header == "" {
		t.Errorf("%s has no header comment saying it is generated", plainManifest)
	}
	if body != rendered {
		t.Fatalf("%s is not what `helm %s` renders: run make deploy-manifest\n%s", plainManifest, strings.Join(templateArgs(), " "), firstDifference(body, rendered))
	}
	t.Logf("rendered with defaults: %d bytes, %d lines", len(rendered), strings.Count(rendered, "\n"))
}

// splitHeader splits off the comment lines a file starts with.
func splitHeader(text string) (header, body string) {
	rest := text
	for strings.HasPrefix(rest, "#") {
		line, after, _ := strings.Cut(rest, "\n")
		header += line + "\n"
		rest = after
	}
	return header, rest
}

func firstDifference(got, want string) string {
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		g, w := "<end of file>", "<end of output>"
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if g != w {
			return fmt.Sprintf("first difference at line %d of the body:\n  file: %q\n  helm: %q", i+1, g, w)
		}
	}
	return "no line differs"
}

func chartAppVersion(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("reading appVersion from Chart.yaml: %v (got %q)", err, chart.AppVersion)
	}
	return chart.AppVersion
}
