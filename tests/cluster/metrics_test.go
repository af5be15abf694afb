//go:build cluster

package cluster

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// In cluster mode the network programming latency counts from the
// EndpointSlice controller's last-change-trigger-time to the map writes,
// as kube-proxy's does, and /healthz reports the Node as eligible.
func TestNetworkProgrammingMetric(t *testing.T) {
	w := newWorld(t)
	pods := w.deployment(t, 2)
	w.apply(t, webService)
	vip := w.clusterIP(t, "web")
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)
	// A pod added once the Service is programmed: the controller's slice
	// update carries the trigger time of that change, the pod's Ready
	// transition. That time has one-second precision (metav1.Time), and a
	// trigger time from before the agent started is ignored, as kube-proxy
	// ignores it: wait until a truncated time is surely after the start.
	time.Sleep(1100 * time.Millisecond)
	pods = append(pods, w.addPod(t, "web-late", map[string]string{"app": "web"}))
	w.waitFrontend(t, vip+":80", "TCP", addrs(8080, pods...)...)

	address := w.agentAddress(t, "serving metrics")
	var body string
	var mf *dto.MetricFamily
	var mfs map[string]*dto.MetricFamily
	for deadline := time.Now().Add(10 * time.Second); ; {
		var code int
		code, body = httpGet(t, "http://"+address+"/metrics")
		if code != 200 {
			t.Fatalf("GET /metrics = %d", code)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		var err error
		if mfs, err = parser.TextToMetricFamilies(strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if mf = mfs["kubeproxy_network_programming_duration_seconds"]; mf != nil && len(mf.GetMetric()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no kubeproxy_network_programming_duration_seconds 10 s after an endpoint change:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	h := mf.GetMetric()[0].GetHistogram()
	if h.GetSampleCount() < 1 || h.GetSampleSum() > 60*float64(h.GetSampleCount()) {
		t.Errorf("network programming: %d observations, %v s in all; want some, each under a minute", h.GetSampleCount(), h.GetSampleSum())
	}
	t.Logf("network programming: %d observations, %.3f s on average", h.GetSampleCount(), h.GetSampleSum()/float64(h.GetSampleCount()))
	for _, name := range []string{"kubeproxy_sync_proxy_rules_service_changes_total", "kubeproxy_sync_proxy_rules_endpoint_changes_total"} {
		if mf := mfs[name]; mf == nil || mf.GetMetric()[0].GetCounter().GetValue() < 1 {
			t.Errorf("%s: %v, want the Service and its slice counted", name, mf)
		}
	}

	code, body := httpGet(t, "http://"+w.agentAddress(t, "serving healthz")+"/healthz")
	var health struct {
		NodeEligible *bool `json:"nodeEligible"`
	}
	if err := json.Unmarshal([]byte(body), &health); err != nil || code != 200 || health.NodeEligible == nil || !*health.NodeEligible {
		t.Errorf("GET /healthz = %d %s, want 200 with nodeEligible true", code, body)
	}
}

// agentAddress is the address of the agent's log line msg.
func (w *world) agentAddress(t *testing.T, msg string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(w.agent.Log(), "\n") {
			var entry struct{ Msg, Address string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == msg {
				return entry.Address
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line in the agent's log", msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
