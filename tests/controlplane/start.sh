#!/usr/bin/env bash
# Builds the Kubernetes binaries if needed and runs the test control plane in
# the foreground, printing its kubeconfig path. Ctrl-C stops it.
#
# Usage: tests/controlplane/start.sh [-dir DIR] [-service-cluster-ip-range CIDRS]
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

bin_dir=$("$script_dir/build.sh")
launcher="$repo_root/.cache/k8s/socklb-controlplane"
(cd "$repo_root" && go build -o "$launcher" ./tests/controlplane/cmd/socklb-controlplane)
exec "$launcher" -bin-dir "$bin_dir" "$@"
