#!/usr/bin/env bash
# socklb standalone demo: a Service like the seed's nginx-service, three
# backend "pods" (network namespaces running a server that answers with its
# name) and a client namespace with no route off the machine. The agent runs
# in standalone mode on a directory of YAML, attached to a cgroup and a bpffs
# that this script creates and removes. Nothing touches the host's cgroups,
# interfaces or /sys/fs/bpf.
set -euo pipefail

SOCKLB=$(realpath "${1:-bin/socklb}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PODS=(pod-a pod-b pod-c)
VIP=10.96.0.50
# shellcheck source=demo/lib.sh
. "$ROOT/demo/lib.sh"
CONF=$WORK/services
trap sandbox_teardown EXIT

step "Sandbox: a node namespace, pods ${PODS[*]} and a client, a cgroup and a bpffs of our own"
sandbox_up
mkdir -p "$CONF"

step "Backends: each pod answers HTTP on :8080 with its own name"
start_servers

write_services() {
	local endpoints=""
	for ip in "$@"; do endpoints+="- addresses: [\"$ip\"]"$'\n'"  conditions: {ready: true}"$'\n'; done
	cat >"$CONF/.nginx.yaml.tmp" <<YAML
apiVersion: v1
kind: Service
metadata: {name: nginx-service, namespace: default}
spec:
  clusterIP: $VIP
  selector: {app: nginx}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: nginx-service-demo
  namespace: default
  labels: {kubernetes.io/service-name: nginx-service}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
$endpoints
YAML
	mv "$CONF/.nginx.yaml.tmp" "$CONF/nginx.yaml"
}

step "Service nginx-service: $VIP:80 -> targetPort 8080 on three pods, written to $CONF"
write_services 10.244.0.2 10.244.0.3 10.244.0.4
cat "$CONF/nginx.yaml"

step "socklb agent --from-dir $CONF"
"$SOCKLB" agent --from-dir "$CONF" --cgroup "$CGROUP" --bpffs "$PIN" --node-name demo-node >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_backends 3

step "curl http://$VIP/ from the client, 30 times: every pod answers"
curl_vip 30 "http://$VIP/"

step "Endpoint pod-c (10.244.0.4) removed from the EndpointSlice"
write_services 10.244.0.2 10.244.0.3
wait_backends 2
curl_vip 30 "http://$VIP/"

step "socklb inspect services"
"$SOCKLB" inspect services --bpffs "$PIN"

step "socklb inspect backends"
"$SOCKLB" inspect backends --bpffs "$PIN"

step "Without socklb's cgroup hooks the VIP is not routed: the same curl from outside the cgroup"
nsenter --net=/run/netns/"$ID-client" curl -s --max-time 2 "http://$VIP/" || echo "curl: exit $? (no route to $VIP: nothing left the machine)"

step "Teardown"
