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
	for n in node client outside "${PODS[@]}"; do ip netns del "$ID-$n" 2>/dev/null; done
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

# start_servers [POD...] runs, in each pod (default: all of PODS), a server
# answering HTTP on :8080 with the pod's name.
start_servers() {
	local namesrv=$WORK/namesrv pod servers=("$@")
	[ $# -gt 0 ] || servers=("${PODS[@]}")
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$namesrv" ./tests/cmd/namesrv)
	for pod in "${servers[@]}"; do
		# nsenter execs the server, so $! is the server itself, killed by PID at teardown.
		nsenter --net=/run/netns/"$ID-$pod" "$namesrv" --name "$pod" --tcp "[::]:8080" >"$WORK/$pod.log" 2>&1 &
		PIDS+=($!)
	done
	for pod in "${servers[@]}"; do
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

# write_corefile KUBECONFIG prints the Corefile of a demo CoreDNS pod: the
# kubernetes plugin reading the API server through KUBECONFIG, every query
# logged. The same server block as tests/controlplane.Corefile.
write_corefile() {
	cat <<COREFILE
.:53 {
    errors
    log
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $1
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    prometheus :9153
    loadbalance
}
COREFILE
}

# start_coredns BINARY POD KUBECONFIG runs CoreDNS in POD's namespace,
# outside the demo cgroup like every backend, and waits until it serves.
start_coredns() {
	write_corefile "$3" >"$WORK/$2.Corefile"
	nsenter --net=/run/netns/"$ID-$2" "$1" -conf "$WORK/$2.Corefile" >"$WORK/$2.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 300); do grep -q "CoreDNS-" "$WORK/$2.log" && return 0; sleep 0.1; done
	cat "$WORK/$2.log" >&2
	return 1
}

# in_client_pod ARGV... runs ARGV in the client namespace, inside the demo
# cgroup, with $WORK/client.resolv.conf mounted on /etc/resolv.conf in a
# private mount namespace, as a container sees the file its kubelet wrote.
in_client_pod() {
	( echo "$BASHPID" >"$CGROUP/cgroup.procs"
	  exec nsenter --net=/run/netns/"$ID-client" unshare --mount --propagation private -- \
		sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$WORK/client.resolv.conf" "$@" )
}

# start_mariadb HOST runs a MariaDB server (Debian's mariadbd) on 3306 in
# HOST's namespace, its data under $WORK, with a user demo/demo and a table.
start_mariadb() {
	local dir=$WORK/mariadb
	mkdir -p "$dir"
	mariadb-install-db --no-defaults --user=root --datadir="$dir/data" --skip-test-db >"$WORK/mariadb-install.log" 2>&1 ||
		{ cat "$WORK/mariadb-install.log" >&2; return 1; }
	nsenter --net=/run/netns/"$ID-$1" mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/sock" \
		--pid-file="$dir/pid" --port=3306 --bind-address=0.0.0.0 --skip-log-bin >"$WORK/mariadb.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 300); do [ -S "$dir/sock" ] && break; sleep 0.1; done
	mariadb --no-defaults --socket="$dir/sock" -u root <<SQL
CREATE USER 'demo'@'%' IDENTIFIED BY 'demo';
CREATE DATABASE shop;
GRANT ALL ON shop.* TO 'demo'@'%';
CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(40));
INSERT INTO shop.orders VALUES (1, 'socks'), (2, 'sockets');
SQL
}

# outside_up makes the namespace "outside", a client off the cluster, on a
# LAN with the node: the node's lan0 has 198.51.100.1/24, the client's eth0
# 198.51.100.100/24 and no other route. Each POD given gets a route to the
# LAN through the node, so it can answer the outside client whose address a
# NodePort connection to a local pod keeps.
outside_up() {
	local pod
	ip netns add "$ID-outside"
	ns outside ip link set lo up
	ns node ip link add lan0 type veth peer name eth0 netns "$ID-outside"
	ns node ip addr add 198.51.100.1/24 dev lan0
	ns node ip link set lan0 up
	ns outside ip addr add 198.51.100.100/24 dev eth0
	ns outside ip link set eth0 up
	for pod in "$@"; do ns "$pod" ip route add 198.51.100.0/24 via 10.244.0.1 dev eth0; done
}

# start_ingress_nginx POD UPSTREAM runs Debian's nginx in POD inside the demo
# cgroup (its resolver's datagrams and its upstream connects meet socklb) as
# the ingress of the seed: /blog goes to http://UPSTREAM:80, the name looked
# up per request by nginx's own resolver at kube-dns (a variable in
# proxy_pass makes nginx resolve at request time, not once through libc).
start_ingress_nginx() {
	local dir=$WORK/ingress-nginx
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    resolver 10.96.0.10 valid=5s ipv6=off;
    server {
        listen 80;
        location /blog {
            set \$blog $2;
            proxy_pass http://\$blog:80;
        }
        location / { return 404 "no route\n"; }
    }
}
NGINX
	( echo "$BASHPID" >"$CGROUP/cgroup.procs"
	  exec nsenter --net=/run/netns/"$ID-$1" nginx -p "$dir" -c "$dir/nginx.conf" -e stderr ) >"$WORK/$1.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do ns "$1" curl -s --max-time 1 http://127.0.0.1/ 2>/dev/null | grep -q "no route" && return 0; sleep 0.1; done
	cat "$WORK/$1.log" >&2
	return 1
}
