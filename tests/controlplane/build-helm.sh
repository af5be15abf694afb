#!/usr/bin/env bash
# Builds helm, which the deploy tests run, from the Go module proxy: helm is
# not a Debian package.
#
# The binary lands in <repo>/.cache/helm/<version>/helm. A cold build takes
# about 2 to 4 minutes; once the binary exists this script only prints its
# path.
#
# Usage: tests/controlplane/build-helm.sh   prints the binary's path last
set -euo pipefail

readonly HELM_VERSION=v3.22.0

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=cached-build.sh
source "$script_dir/cached-build.sh"

# `go install pkg@version` builds helm with its own go.mod, outside this
# module, so none of helm's dependencies leak into socklb's go.sum. The
# version variable is what `helm version` prints.
build_helm() {
	local out=$1
	mkdir -p "$out.d"
	(
		cd "$(dirname "$out")"
		GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$out.d" \
			go install -trimpath \
			-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
			"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	)
	mv "$out.d/helm" "$out"
	"$out" version >&2
}

cached_build build-helm.sh "$repo_root/.cache/helm/$HELM_VERSION/helm" build_helm
