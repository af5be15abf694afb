// Package metrics exports what the agent and its datapath do as Prometheus
// metrics. Where a figure means what one of kube-proxy's means, it carries
// kube-proxy's name, type, buckets and labels (kubeproxy_*, from
// k8s.io/kubernetes/pkg/proxy/metrics of v1.37), so that dashboards and
// alerts written for kube-proxy keep working; socklb's own figures are
// socklb_*. The datapath's figures (map fill levels, the per-CPU counters)
// are read from the kernel at scrape time.
//
// kube-proxy runs one proxier per IP family and labels its sync figures
// with it; one socklb sync programs both families. A sync's figures are
// therefore recorded under each family the desired state holds frontends
// of (IPv4 when it holds none), as a dual-stack kube-proxy's two proxiers
// each would record theirs.
package metrics
