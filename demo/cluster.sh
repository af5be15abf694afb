#!/usr/bin/env bash
# socklb cluster demo: the standalone demo's story, driven through a real
# control plane (etcd, kube-apiserver, kube-controller-manager on 127.0.0.1,
# started here) and kubectl. Pods have no kubelet: each is a network namespace
# running a server, registered as a Pod whose status this script sets, so the
# real endpointslice controller publishes real EndpointSlices.
set -euo pipefail

SOCKLB=$(realpath "${1:-bin/socklb}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PODS=(nginx-a nginx-b nginx-c)
NODE=demo-node
# shellcheck source=demo/lib.sh
. "$ROOT/demo/lib.sh"

teardown() {
	sandbox_teardown
	if [ -n "${CP_PID:-}" ]; then kill -INT "$CP_PID" 2>/dev/null; wait "$CP_PID" 2>/dev/null; fi
}
trap teardown EXIT

step "Control plane: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1"
BIN=$("$ROOT/tests/controlplane/build.sh")
(cd "$ROOT" && go build -o "$WORK/socklb-controlplane" ./tests/controlplane/cmd/socklb-controlplane)
"$WORK/socklb-controlplane" -bin-dir "$BIN" >"$WORK/controlplane.out" 2>"$WORK/controlplane.log" &
CP_PID=$!
for _ in $(seq 120); do grep -q "kubeconfig:" "$WORK/controlplane.out" && break; sleep 0.5; done
KUBECONFIG=$(awk '/kubeconfig:/ {print $2}' "$WORK/controlplane.out")
[ -n "$KUBECONFIG" ] || { cat "$WORK/controlplane.log" >&2; exit 1; }
export KUBECONFIG
kubectl() { "$BIN/kubectl" "$@"; }
head -n1 "$WORK/controlplane.out"
kubectl version 2>/dev/null | sed 's/^/  /'

step "Sandbox: a node namespace, pods ${PODS[*]} and a client, a cgroup and a bpffs of our own"
sandbox_up
start_servers

step "kubectl: the Node, three nginx pods on it, and nginx-service (port 80 -> targetPort http)"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Node
metadata: {name: $NODE}
YAML
for pod in "${PODS[@]}"; do
	ip=$(pod_ip "$pod")
	kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $pod, labels: {app: nginx}}
spec:
  nodeName: $NODE
  terminationGracePeriodSeconds: 0
  containers:
  - {name: nginx, image: nginx, ports: [{name: http, containerPort: 8080}]}
YAML
	# What a kubelet would report once the container runs and is ready.
	kubectl patch pod "$pod" --subresource=status --type=merge -p "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"},{\"type\":\"ContainersReady\",\"status\":\"True\"}]}}" >/dev/null
	echo "pod/$pod running at $ip"
done
kubectl apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: nginx-service}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
YAML
VIP=$(kubectl get service nginx-service -o jsonpath='{.spec.clusterIP}')
kubectl get service nginx-service

step "socklb agent --kubeconfig (cluster mode)"
"$SOCKLB" agent --kubeconfig "$KUBECONFIG" --node-name "$NODE" --cgroup "$CGROUP" --bpffs "$PIN" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_backends 3
kubectl get endpointslices -l kubernetes.io/service-name=nginx-service
"$SOCKLB" inspect services --bpffs "$PIN"

step "curl http://$VIP/ (the ClusterIP) from the client, 30 times: every pod answers"
curl_vip 30 "http://$VIP/"

step "kubectl delete pod nginx-c (scale to two): it leaves the set and gets no new connection"
kubectl delete pod nginx-c --wait=false
wait_backends 2
"$SOCKLB" inspect services --bpffs "$PIN"
curl_vip 30 "http://$VIP/"

step "nginx-b fails its readiness probe: it leaves the backend set"
kubectl patch pod nginx-b --subresource=status --type=merge -p '{"status":{"conditions":[{"type":"Ready","status":"False"},{"type":"ContainersReady","status":"False"}]}}' >/dev/null
for _ in $(seq 100); do [ "$("$SOCKLB" inspect services --bpffs "$PIN" -o json | grep -c '"state": "active"')" = 1 ] && break; sleep 0.1; done
kubectl get endpointslices -l kubernetes.io/service-name=nginx-service -o jsonpath='{range .items[*].endpoints[*]}{.targetRef.name}{"  ready="}{.conditions.ready}{"  terminating="}{.conditions.terminating}{"\n"}{end}'
curl_vip 30 "http://$VIP/"

step "socklb inspect services"
"$SOCKLB" inspect services --bpffs "$PIN"

step "Teardown"
kubectl delete pod --all --force --grace-period=0 >/dev/null 2>&1 || true
