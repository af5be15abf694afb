#!/usr/bin/env bash
# Builds helm, which the deploy tests run, from the Go module proxy: helm is
# not a Debian package.
#
# The binary lands in <repo>/.cache/helm/<version>/helm (ignored by git). A
# cold build takes about 3.5 minutes; once the binary exists this script only
# prints its path.
#
# Usage: tests/controlplane/build-helm.sh   prints the binary's path last
set -euo pipefail

readonly HELM_VERSION=v3.22.0

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
version_cache_dir="$repo_root/.cache/helm/$HELM_VERSION"
helm_bin="$version_cache_dir/helm"
started_at=$(date +%s.%N)

log() { printf '[build-helm.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

elapsed() { awk -v s="$started_at" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }'; }

if [[ -x "$helm_bin" ]]; then
	log "cached helm found ($(elapsed))"
	echo "$helm_bin"
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
if [[ -x "$helm_bin" ]]; then
	log "helm built by a concurrent build ($(elapsed))"
	echo "$helm_bin"
	exit 0
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }

# Installing into a scratch directory and renaming keeps a killed build from
# leaving a partial binary that the next run would trust.
staging_dir=$(mktemp -d "$version_cache_dir/bin.partial.XXXXXX")
trap 'rm -rf "$staging_dir"' EXIT

log "building helm $HELM_VERSION into $version_cache_dir (about 3.5 minutes cold)"
# `go install pkg@version` builds helm with its own go.mod, outside this
# module, so none of helm's dependencies leak into socklb's go.sum. The
# version variable is what `helm version` prints.
(
	cd "$version_cache_dir"
	GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$staging_dir" \
		go install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
)
mv "$staging_dir/helm" "$helm_bin"
trap - EXIT
rm -rf "$staging_dir"
"$helm_bin" version >&2
log "done in $(elapsed)"
echo "$helm_bin"
