#!/usr/bin/env bash
# Builds the CoreDNS binary the cluster harness runs as kube-dns (the wrapper
# module in this directory: CoreDNS with only the plugins the harness uses).
#
# The binary lands in <repo>/.cache/coredns/<version>/coredns (ignored by git).
# A cold build takes 5 to 8 minutes on two cores (55 MB); once the binary exists this
# script only prints its path.
#
# Usage: tests/coredns/build.sh        prints the binary's path last
set -euo pipefail

readonly COREDNS_VERSION=v1.15.0

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
version_cache_dir="$repo_root/.cache/coredns/$COREDNS_VERSION"
binary="$version_cache_dir/coredns"
started_at=$(date +%s.%N)

log() { printf '[coredns/build.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

elapsed() { awk -v s="$started_at" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }'; }

if [[ -x "$binary" ]]; then
	log "cached binary found ($(elapsed))"
	echo "$binary"
	exit 0
fi

mkdir -p "$version_cache_dir"
# A test binary and a human may build at once; the second one waits for the
# first and then finds the binary.
exec {lock_fd}>"$version_cache_dir/build.lock"
if ! flock -n "$lock_fd"; then
	log "another build is running; waiting for it"
	flock "$lock_fd"
fi
if [[ -x "$binary" ]]; then
	log "binary built by a concurrent build ($(elapsed))"
	echo "$binary"
	exit 0
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }

# Building to a scratch name and renaming keeps a killed build from leaving a
# partial binary that the next run would trust.
staging="$version_cache_dir/coredns.partial.$$"
trap 'rm -f "$staging"' EXIT

log "building CoreDNS $COREDNS_VERSION into $binary (a cold build takes 5 to 8 minutes)"
(
	cd "$script_dir"
	GOWORK=off CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$staging" .
)
mv "$staging" "$binary"
trap - EXIT
"$binary" -version >&2
log "done in $(elapsed)"
echo "$binary"
