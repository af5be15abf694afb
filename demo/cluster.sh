#!/usr/bin/env bash
# socklb cluster demo: the standalone demo's story, driven through a real
# control plane (etcd, kube-apiserver, kube-controller-manager on 127.0.0.1,
# started here) and kubectl. Pods have no kubelet: each is a network namespace
# running a server, registered as a Pod whose status this script sets, so the
# real endpointslice controller publishes real EndpointSlices.
set -euo pipefail

SOCKLB=$(realpath "${1:-bin/socklb}")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX_PODS=(nginx-a nginx-b nginx-c)
# coredns-a and coredns-b are kube-dns; mysql-host plays a database host
# outside the cluster, reached through a selector-less Service.
# ingress is the nginx ingress controller behind a NodePort Service.
PODS=("${NGINX_PODS[@]}" coredns-a coredns-b mysql-host ingress)
NODE=demo-node
# shellcheck source=demo/lib.sh
. "$ROOT/demo/lib.sh"

teardown() {
	sandbox_teardown
	if [ -n "${CP_PID:-}" ]; then kill -INT "$CP_PID" 2>/dev/null; wait "$CP_PID" 2>/dev/null; fi
}
trap teardown EXIT

step "Sandbox: a node namespace, pods ${PODS[*]} and a client, a cgroup and a bpffs of our own"
sandbox_up
outside_up ingress
start_servers "${NGINX_PODS[@]}"

step "Control plane: etcd, kube-apiserver and kube-controller-manager on 127.0.0.1"
BIN=$("$ROOT/tests/controlplane/build.sh")
COREDNS=$("$ROOT/tests/coredns/build.sh")
(cd "$ROOT" && go build -o "$WORK/socklb-controlplane" ./tests/controlplane/cmd/socklb-controlplane)
# The CoreDNS pods reach the API server on the machine's 127.0.0.1 through a
# relay on their own 127.0.0.1.
"$WORK/socklb-controlplane" -bin-dir "$BIN" \
	-relay-kubeconfig "/run/netns/$ID-coredns-a=$WORK/coredns-a.kubeconfig" \
	-relay-kubeconfig "/run/netns/$ID-coredns-b=$WORK/coredns-b.kubeconfig" \
	-relay-kubeconfig "/run/netns/$ID-node=$WORK/node.kubeconfig" \
	>"$WORK/controlplane.out" 2>"$WORK/controlplane.log" &
CP_PID=$!
for _ in $(seq 120); do grep -q "kubeconfig:" "$WORK/controlplane.out" && break; sleep 0.5; done
KUBECONFIG=$(awk '/kubeconfig:/ {print $2}' "$WORK/controlplane.out")
[ -n "$KUBECONFIG" ] || { cat "$WORK/controlplane.log" >&2; exit 1; }
export KUBECONFIG
kubectl() { "$BIN/kubectl" "$@"; }
KUBE_DNS=10.96.0.10

# register_pod NAMESPACE NAME LABELS IMAGE PORTS: a Pod on the node at NAME's
# sandbox address, Running and Ready as a kubelet would report it.
register_pod() {
	local ip
	ip=$(pod_ip "$2")
	kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {namespace: $1, name: $2, labels: $3}
spec:
  nodeName: $NODE
  terminationGracePeriodSeconds: 0
  containers:
  - {name: app, image: $4, ports: $5}
YAML
	kubectl -n "$1" patch pod "$2" --subresource=status --type=merge -p "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}],\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"},{\"type\":\"ContainersReady\",\"status\":\"True\"}]}}" >/dev/null
	echo "pod/$2 running at $ip"
}

# wait_frontend ADDR:PORT N waits until socklb's maps give frontend ADDR:PORT
# (every protocol) N active backends.
wait_frontend() {
	for _ in $(seq 200); do
		"$SOCKLB" inspect services --bpffs "$PIN" 2>/dev/null |
			awk -v f="$1" -v n="$2" '$1 == f { rows++; if ($6 < n) short++ } END { exit !(rows > 0 && short == 0) }' && return 0
		sleep 0.1
	done
	echo "the maps never gave $1 $2 backends" >&2
	"$SOCKLB" inspect services --bpffs "$PIN" >&2
	return 1
}
head -n1 "$WORK/controlplane.out"
kubectl version 2>/dev/null | sed 's/^/  /'

step "kubectl: the Node, three nginx pods on it, and nginx-service (port 80 -> targetPort http)"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Node
metadata: {name: $NODE}
YAML
# The address a kubelet would report: NodePort frontends are on it.
kubectl patch node "$NODE" --subresource=status --type=merge \
	-p '{"status":{"addresses":[{"type":"InternalIP","address":"198.51.100.1"},{"type":"Hostname","address":"'"$NODE"'"}]}}' >/dev/null
for pod in "${NGINX_PODS[@]}"; do
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

step "socklb agent --kubeconfig (cluster mode), in the node namespace, NodePorts on lan0"
# Generic XDP: native XDP_TX on veth holds frames until the next packet.
# nsenter execs the agent, so $! is the agent itself, stopped by PID at teardown.
nsenter --net=/run/netns/"$ID-node" "$SOCKLB" agent --kubeconfig "$WORK/node.kubeconfig" --node-name "$NODE" --cgroup "$CGROUP" --bpffs "$PIN" \
	--devices lan0 --xdp-mode generic >"$WORK/agent.log" 2>&1 &
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

step "nginx-b passes its readiness probe again"
kubectl patch pod nginx-b --subresource=status --type=merge -p '{"status":{"conditions":[{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}}' >/dev/null
wait_frontend "$VIP:80" 2

step "Cluster DNS: CoreDNS pods coredns-a and coredns-b in kube-system behind kube-dns ($KUBE_DNS)"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Service
metadata:
  namespace: kube-system
  name: kube-dns
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $KUBE_DNS
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: dns-tcp}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: metrics}
YAML
for pod in coredns-a coredns-b; do
	start_coredns "$COREDNS" "$pod" "$WORK/$pod.kubeconfig"
	register_pod kube-system "$pod" "{k8s-app: kube-dns}" coredns/coredns \
		"[{name: dns, containerPort: 53, protocol: UDP}, {name: dns-tcp, containerPort: 53, protocol: TCP}, {name: metrics, containerPort: 9153, protocol: TCP}]"
done
wait_frontend "$KUBE_DNS:53" 2
kubectl get svc -n kube-system kube-dns
kubectl get endpointslices -n kube-system -l kubernetes.io/service-name=kube-dns

step "The client pod's resolv.conf, as a kubelet writes it for dnsPolicy ClusterFirst"
printf 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver %s\noptions ndots:5\n' "$KUBE_DNS" >"$WORK/client.resolv.conf"
cat "$WORK/client.resolv.conf"

step "curl http://nginx-service.default from the client pod, 10 times (glibc resolves it through kube-dns)"
echo '$ getent hosts nginx-service.default'
in_client_pod getent hosts nginx-service.default
echo '$ curl -s http://nginx-service.default/   (10 times)'
for _ in $(seq 10); do in_client_pod curl -s --max-time 2 http://nginx-service.default/ || echo "curl failed"; done | sort | uniq -c
echo '$ dig +search nginx-service'
in_client_pod dig +search +noall +answer +stats nginx-service | grep -E 'IN|SERVER'
echo "queries for nginx-service (all search-path tries, A and AAAA) logged by coredns-a: $(grep -c 'IN nginx-service' "$WORK/coredns-a.log"), coredns-b: $(grep -c 'IN nginx-service' "$WORK/coredns-b.log")"

step "svc-mysql: MariaDB on mysql-host (outside the cluster), a selector-less Service and hand-made Endpoints"
start_mariadb mysql-host
MYSQL_IP=$(pod_ip mysql-host)
kubectl apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: svc-mysql}
spec:
  ports: [{name: mysql, port: 3306, targetPort: 3306, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: svc-mysql}
subsets:
- addresses: [{ip: $MYSQL_IP}]
  ports: [{name: mysql, port: 3306, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-mysql-manual
  labels: {kubernetes.io/service-name: svc-mysql}
addressType: IPv4
ports: [{name: mysql, port: 3306, protocol: TCP}]
endpoints:
- addresses: [$MYSQL_IP]
  conditions: {ready: true}
YAML
MYSQL_VIP=$(kubectl get service svc-mysql -o jsonpath='{.spec.clusterIP}')
wait_frontend "$MYSQL_VIP:3306" 1
kubectl get svc svc-mysql
kubectl get endpoints svc-mysql 2>/dev/null
echo '$ mariadb -h svc-mysql -P 3306 -u demo -pdemo shop -e "SELECT ..."'
in_client_pod mariadb --no-defaults --table -h svc-mysql -P 3306 -u demo -pdemo shop \
	-e "SELECT CONCAT('MariaDB ', VERSION()) AS server, @@port AS port, COUNT(*) AS orders FROM orders"

step "Ingress: nginx (Debian's) in pod ingress behind a NodePort, proxying /blog to the Service blog by name"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: blog}
spec:
  selector: {app: nginx}
  ports: [{name: http, port: 80, targetPort: http, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ingress}
spec:
  type: NodePort
  selector: {app: ingress}
  ports: [{name: http, port: 80, targetPort: 80, nodePort: 30080, protocol: TCP}]
YAML
start_ingress_nginx ingress blog.default.svc.cluster.local
register_pod default ingress "{app: ingress}" nginx "[{name: http, containerPort: 80, protocol: TCP}]"
wait_frontend 198.51.100.1:30080 1
kubectl get svc blog ingress
grep -E 'resolver|location|proxy_pass|set ' "$WORK/ingress-nginx/nginx.conf"
echo '$ curl -s http://198.51.100.1:30080/blog   (from outside, 6 times)'
for _ in $(seq 6); do ns outside curl -s --max-time 3 http://198.51.100.1:30080/blog || echo "curl failed"; done | sort | uniq -c
echo "nginx's queries for blog: coredns-a $(grep -c 'A IN blog\.' "$WORK/coredns-a.log"), coredns-b $(grep -c 'A IN blog\.' "$WORK/coredns-b.log")"

step "socklb inspect services"
"$SOCKLB" inspect services --bpffs "$PIN"

step "Teardown"
kubectl delete pod --all --force --grace-period=0 >/dev/null 2>&1 || true
kubectl delete pod -n kube-system --all --force --grace-period=0 >/dev/null 2>&1 || true
