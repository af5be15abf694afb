#!/usr/bin/env bash
# socklb standalone demo: a Service like the seed's nginx-service, three
# backend "pods" (network namespaces running a server that answers with its
# name) and a client namespace with no route off the machine. The agent runs
# in standalone mode on a directory of YAML, attached to a cgroup and a bpffs
# that this script creates and removes. Nothing touches the host's cgroups,
# interfaces or /sys/fs/bpf.
set -euo pipefail

SOCKLB=${1:-bin/socklb}
SOCKLB=$(realpath "$SOCKLB")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VIP=10.96.0.50
ID=demo$$
WORK=$(mktemp -d /tmp/socklb-demo.XXXXXX)
BPFFS=$WORK/bpffs
PIN=$BPFFS/socklb
CONF=$WORK/services
PIDS=()
PODS=(pod-a pod-b pod-c)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ns() { local n=$1; shift; nsenter --net=/run/netns/"$ID-$n" "$@"; }

cgroup2_root() {
	# The cgroup2 mount of the hierarchy's root: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts.
	awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2" && $4 == "/") print $5; break } }' /proc/self/mountinfo | head -n1
}

teardown() {
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	[ -d "$PIN" ] && "$SOCKLB" cleanup --bpffs "$PIN" --log-level warn
	if [ -n "${CGROUP:-}" ] && [ -d "$CGROUP" ]; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CGROUP" 2>/dev/null && break; sleep 0.2; done
	fi
	mountpoint -q "$BPFFS" && umount "$BPFFS"
	for n in node client "${PODS[@]}"; do ip netns del "$ID-$n" 2>/dev/null; done
	rm -rf "$WORK"
}
trap teardown EXIT

[ "$(id -u)" = 0 ] || { echo "the demo needs root (it creates namespaces, a cgroup and a bpffs)" >&2; exit 1; }
NAMESRV=$WORK/namesrv
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$NAMESRV" ./tests/cmd/namesrv)

step "Sandbox: a node namespace, pods ${PODS[*]} and a client, a cgroup and a bpffs of our own"
ip netns add "$ID-node"
ns node ip link set lo up
ns node sysctl -qw net.ipv4.ip_forward=1
i=2
for pod in "${PODS[@]}" client; do
	ip netns add "$ID-$pod"
	ns "$pod" ip link set lo up
	host_if="s$$h$i"
	ns node ip link add "$host_if" type veth peer name eth0 netns "$ID-$pod"
	ns node ip link set "$host_if" up
	ns node ip addr add 10.244.0.1/32 dev "$host_if"
	ns node ip route add "10.244.0.$i/32" dev "$host_if"
	ns "$pod" ip addr add "10.244.0.$i/32" dev eth0
	ns "$pod" ip link set eth0 up
	ns "$pod" ip route add 10.244.0.1/32 dev eth0 scope link
	# Only the pod range is routed: an untranslated VIP fails here, on the machine.
	ns "$pod" ip route add 10.244.0.0/16 via 10.244.0.1 dev eth0
	i=$((i + 1))
done
CGROUP=$(cgroup2_root)/socklb-$ID
mkdir "$CGROUP"
mkdir -p "$BPFFS" "$CONF"
mount -t bpf bpffs "$BPFFS"
echo "cgroup: $CGROUP"
echo "bpffs:  $BPFFS"

step "Backends: each pod answers HTTP on :8080 with its own name"
for pod in "${PODS[@]}"; do
	# nsenter execs the server, so $! is the server itself, killed by PID at teardown.
	nsenter --net=/run/netns/"$ID-$pod" "$NAMESRV" --name "$pod" --tcp "[::]:8080" >"$WORK/$pod.log" 2>&1 &
	PIDS+=($!)
done
for pod in "${PODS[@]}"; do
	for _ in $(seq 50); do grep -q ready "$WORK/$pod.log" && break; sleep 0.1; done
done

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

wait_backends() {
	local want=$1
	for _ in $(seq 100); do
		n=$("$SOCKLB" inspect services --bpffs "$PIN" -o json 2>/dev/null | grep -c '"backend_id"' || true)
		[ "$n" = "$want" ] && return 0
		sleep 0.05
	done
	echo "the maps never showed $want backends" >&2
	return 1
}

curl_vip() {
	# The client runs inside the demo cgroup, so its connect() meets socklb.
	for _ in $(seq "$1"); do
		( echo "$BASHPID" >"$CGROUP/cgroup.procs"; exec nsenter --net=/run/netns/"$ID-client" curl -s --max-time 2 "http://$VIP/" ) || echo "curl failed"
	done | sort | uniq -c
}

step "Service nginx-service: $VIP:80 -> targetPort 8080 on three pods, written to $CONF"
write_services 10.244.0.2 10.244.0.3 10.244.0.4
cat "$CONF/nginx.yaml"

step "socklb agent --from-dir $CONF"
"$SOCKLB" agent --from-dir "$CONF" --cgroup "$CGROUP" --bpffs "$PIN" --node-name demo-node >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_backends 3

step "curl http://$VIP/ from the client, 30 times: every pod answers"
curl_vip 30

step "Endpoint pod-c (10.244.0.4) removed from the EndpointSlice"
write_services 10.244.0.2 10.244.0.3
wait_backends 2
curl_vip 30

step "socklb inspect services"
"$SOCKLB" inspect services --bpffs "$PIN"

step "socklb inspect backends"
"$SOCKLB" inspect backends --bpffs "$PIN"

step "Without socklb's cgroup hooks the VIP is not routed: the same curl from outside the cgroup"
nsenter --net=/run/netns/"$ID-client" curl -s --max-time 2 "http://$VIP/" || echo "curl: exit $? (no route to $VIP: nothing left the machine)"

step "Teardown"
