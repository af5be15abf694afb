package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socklb/socklb/pkg/source"
)

// changesCollector reads the source's change tracker at scrape time:
// kube-proxy's sync_proxy_rules_{service,endpoint}_changes_{total,pending}.
// A total counts every update the source saw, no-ops included, as
// kube-proxy's does; pending counts the objects (Services, EndpointSlices)
// whose change waits for a sync.
type changesCollector struct {
	changes                          source.ChangeCounter
	serviceTotal, endpointTotal      *prometheus.Desc
	servicePending, endpointsPending *prometheus.Desc
}

func newChangesCollector(changes source.ChangeCounter) *changesCollector {
	return &changesCollector{
		changes:          changes,
		serviceTotal:     prometheus.NewDesc("kubeproxy_sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes", nil, nil),
		endpointTotal:    prometheus.NewDesc("kubeproxy_sync_proxy_rules_endpoint_changes_total", "Cumulative proxy rules Endpoint changes", nil, nil),
		servicePending:   prometheus.NewDesc("kubeproxy_sync_proxy_rules_service_changes_pending", "Pending proxy rules Service changes", nil, nil),
		endpointsPending: prometheus.NewDesc("kubeproxy_sync_proxy_rules_endpoint_changes_pending", "Pending proxy rules Endpoint changes", nil, nil),
	}
}

func (c *changesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.serviceTotal
	ch <- c.endpointTotal
	ch <- c.servicePending
	ch <- c.endpointsPending
}

func (c *changesCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.changes.ChangeCounts()
	ch <- prometheus.MustNewConstMetric(c.serviceTotal, prometheus.CounterValue, float64(n.ServiceEvents))
	ch <- prometheus.MustNewConstMetric(c.endpointTotal, prometheus.CounterValue, float64(n.EndpointSliceEvents))
	ch <- prometheus.MustNewConstMetric(c.servicePending, prometheus.GaugeValue, float64(n.ServicesPending))
	ch <- prometheus.MustNewConstMetric(c.endpointsPending, prometheus.GaugeValue, float64(n.EndpointSlicesPending))
}
