#!/usr/bin/env bash
# Builds the CoreDNS binary the cluster harness runs as kube-dns (the wrapper
# module in this directory: CoreDNS with only the plugins the harness uses).
#
# The binary lands in <repo>/.cache/coredns/<version>/coredns. A cold build
# takes 5 to 8 minutes on two cores (55 MB); once the binary exists this
# script only prints its path.
#
# Usage: tests/coredns/build.sh        prints the binary's path last
set -euo pipefail

readonly COREDNS_VERSION=v1.15.0

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=../controlplane/cached-build.sh
source "$repo_root/tests/controlplane/cached-build.sh"

build_coredns() {
	local out=$1
	(
		cd "$script_dir"
		GOWORK=off CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$out" .
	)
	"$out" -version >&2
}

cached_build coredns/build.sh "$repo_root/.cache/coredns/$COREDNS_VERSION/coredns" build_coredns
