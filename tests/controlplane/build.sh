#!/usr/bin/env bash
# Builds the Kubernetes binaries the control-plane test harness runs and makes
# sure etcd and openssl are installed.
#
# Binaries land in <repo>/.cache/k8s/<version>/bin (ignored by git). A cold
# build takes about 12 minutes and 2.5 GiB of memory; once the binaries exist
# this script only prints their directory.
#
# Usage: tests/controlplane/build.sh        prints the binary directory last
set -euo pipefail

readonly KUBERNETES_VERSION=v1.37.2
readonly BINARIES=(kube-apiserver kube-controller-manager kubectl kube-proxy)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
wrapper_module_dir="$script_dir/k8s"
version_cache_dir="$repo_root/.cache/k8s/$KUBERNETES_VERSION"
bin_dir="$version_cache_dir/bin"
started_at=$(date +%s.%N)

log() { printf '[build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

elapsed() { awk -v s="$started_at" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }'; }

all_binaries_present() {
	local name
	for name in "${BINARIES[@]}"; do
		[[ -x "$bin_dir/$name" ]] || return 1
	done
}

apt_install() {
	if [[ $(id -u) -ne 0 ]]; then
		log "installing $* needs root: run 'apt-get install -y $*' as root"
		return 1
	fi
	# The package index is only refreshed when the plain install fails, because
	# an update costs time and network on every fresh machine.
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; then
		log "apt-get install $* failed; refreshing the package index and retrying"
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
	fi
}

ensure_system_tools() {
	if [[ ! -x /usr/bin/etcd ]]; then
		log "installing etcd (Debian package etcd-server)"
		apt_install etcd-server
	fi
	# The Go harness makes its certificates itself; openssl is for humans
	# inspecting them and for scripts that predate the harness.
	if ! command -v openssl >/dev/null; then
		log "installing openssl"
		apt_install openssl
	fi
}

ensure_system_tools

if all_binaries_present; then
	log "cached binaries found ($(elapsed))"
	echo "$bin_dir"
	exit 0
fi

mkdir -p "$version_cache_dir"
# Two test binaries or a test and a human may build at once; the second one
# waits for the first and then finds the binaries.
exec {lock_fd}>"$version_cache_dir/build.lock"
if ! flock -n "$lock_fd"; then
	log "another build is running; waiting for it"
	flock "$lock_fd"
fi
if all_binaries_present; then
	log "binaries built by a concurrent build ($(elapsed))"
	echo "$bin_dir"
	exit 0
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }

version_ldflags=""
for version_package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	version_ldflags+=" -X $version_package.gitVersion=$KUBERNETES_VERSION"
	version_ldflags+=" -X $version_package.gitMajor=1"
	version_ldflags+=" -X $version_package.gitMinor=37"
	version_ldflags+=" -X $version_package.gitTreeState=clean"
done

# Building into a scratch directory and renaming keeps a killed build from
# leaving a partial set of binaries that the next run would trust.
staging_dir=$(mktemp -d "$version_cache_dir/bin.partial.XXXXXX")
trap 'rm -rf "$staging_dir"' EXIT
chmod 755 "$staging_dir"

log "building ${BINARIES[*]} $KUBERNETES_VERSION into $bin_dir"
log "a cold build takes about 12 minutes and 2.5 GiB of memory; with a warm Go build cache about 1.5 minutes, mostly linking"
packages=()
for name in "${BINARIES[@]}"; do
	packages+=("k8s.io/kubernetes/cmd/$name")
done
# One go build for all commands so the compiler keeps both cores busy while
# the single-threaded links of the others run.
(
	cd "$wrapper_module_dir"
	# -buildvcs=false: the repository's commit is not the binaries' version,
	# and stamping it would relink all four after every commit.
	GOWORK=off CGO_ENABLED=0 \
		go build -buildvcs=false -trimpath -o "$staging_dir/" -ldflags "-s -w$version_ldflags" "${packages[@]}"
)
log "go build finished ($(elapsed))"

rm -rf "$bin_dir"
mv "$staging_dir" "$bin_dir"
trap - EXIT
"$bin_dir/kube-apiserver" --version >&2
log "done in $(elapsed)"
echo "$bin_dir"
