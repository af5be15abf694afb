# Shared by the demos: a sandbox of network namespaces, a cgroup and a bpffs
# that the demo creates and removes. Nothing touches the host's cgroups,
# interfaces or /sys/fs/bpf. Source it after setting SOCKLB and PODS.

ID=demo$$
WORK=$(mktemp -d /tmp/socklb-demo.XXXXXX)
BPFFS=$WORK/bpffs
PIN=$BPFFS/socklb
PIDS=()
CGROUP=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ns() { local n=$1; shift; nsenter --net=/run/netns/"$ID-$n" "$@"; }

cgroup2_root() {
	# The cgroup2 mount of the hierarchy's root: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts.
	awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2" && $4 == "/") print $5; break } }' /proc/self/mountinfo | head -n1
}

sandbox_teardown() {
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	[ -d "$PIN" ] && "$SOCKLB" cleanup --bpffs "$PIN" --log-level warn
	if [ -n "$CGROUP" ] && [ -d "$CGROUP" ]; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CGROUP" 2>/dev/null && break; sleep 0.2; done
	fi
	mountpoint -q "$BPFFS" && umount "$BPFFS"
	for n in node client "${PODS[@]}"; do ip netns del "$ID-$n" 2>/dev/null; done
	rm -rf "$WORK"
}

# pod_ip NAME prints the address the sandbox gives pod NAME.
pod_ip() {
	local i=2 pod
	for pod in "${PODS[@]}" client; do
		[ "$pod" = "$1" ] && { echo "10.244.0.$i"; return; }
		i=$((i + 1))
	done
}

# sandbox_up makes the node namespace, one namespace per pod in PODS and a
# client, joined by veths. Pods and the client have routes to the pod range
# only, so an untranslated VIP fails on the machine.
sandbox_up() {
	[ "$(id -u)" = 0 ] || { echo "the demo needs root (it creates namespaces, a cgroup and a bpffs)" >&2; exit 1; }
	ip netns add "$ID-node"
	ns node ip link set lo up
	ns node sysctl -qw net.ipv4.ip_forward=1
	local i=2 pod host_if
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
		ns "$pod" ip route add 10.244.0.0/16 via 10.244.0.1 dev eth0
		i=$((i + 1))
	done
	CGROUP=$(cgroup2_root)/socklb-$ID
	mkdir "$CGROUP"
	mkdir -p "$BPFFS"
	mount -t bpf bpffs "$BPFFS"
	echo "cgroup: $CGROUP"
	echo "bpffs:  $BPFFS"
}

# start_servers runs, in each pod, a server answering HTTP on :8080 with the pod's name.
start_servers() {
	local namesrv=$WORK/namesrv pod
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$namesrv" ./tests/cmd/namesrv)
	for pod in "${PODS[@]}"; do
		# nsenter execs the server, so $! is the server itself, killed by PID at teardown.
		nsenter --net=/run/netns/"$ID-$pod" "$namesrv" --name "$pod" --tcp "[::]:8080" >"$WORK/$pod.log" 2>&1 &
		PIDS+=($!)
	done
	for pod in "${PODS[@]}"; do
		for _ in $(seq 50); do grep -q ready "$WORK/$pod.log" && break; sleep 0.1; done
	done
}

# wait_backends N waits until the maps hold N backend slots.
wait_backends() {
	local n
	for _ in $(seq 200); do
		n=$("$SOCKLB" inspect services --bpffs "$PIN" -o json 2>/dev/null | grep -c '"backend_id"' || true)
		[ "$n" = "$1" ] && return 0
		sleep 0.05
	done
	echo "the maps never showed $1 backends" >&2
	return 1
}

# curl_vip COUNT URL curls from the client, inside the demo cgroup so that its
# connect() meets socklb, and counts the answers.
curl_vip() {
	for _ in $(seq "$1"); do
		( echo "$BASHPID" >"$CGROUP/cgroup.procs"; exec nsenter --net=/run/netns/"$ID-client" curl -s --max-time 2 "$2" ) || echo "curl failed"
	done | sort | uniq -c
}
