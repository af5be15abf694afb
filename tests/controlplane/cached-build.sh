# Sourced by the scripts that build a binary the tests run from the Go module
# proxy (build-helm.sh, tests/coredns/build.sh): the binary is cached under
# <repo>/.cache (ignored by git) and built at most once at a time.
#
# cached_build NAME BINARY BUILD prints BINARY's path last, after building it
# with the function BUILD when it is missing: BUILD gets a scratch path to
# write the binary to, renamed to BINARY once it succeeded, so that a killed
# build never leaves a partial binary the next run would trust.
cached_build() {
	local name=$1 binary=$2 build=$3
	local dir started_at lock_fd
	dir=$(dirname "$binary")
	started_at=$(date +%s.%N)
	_cached_build_log() { printf '[%s %s] %s\n' "$name" "$(date +%H:%M:%S)" "$*" >&2; }
	_cached_build_elapsed() { awk -v s="$started_at" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1fs", e - s }'; }

	if [[ -x "$binary" ]]; then
		_cached_build_log "cached binary found ($(_cached_build_elapsed))"
		echo "$binary"
		return 0
	fi
	mkdir -p "$dir"
	# A test binary and a human may build at once; the second one waits for
	# the first and then finds the binary.
	exec {lock_fd}>"$dir/build.lock"
	if ! flock -n "$lock_fd"; then
		_cached_build_log "another build is running; waiting for it"
		flock "$lock_fd"
	fi
	if [[ -x "$binary" ]]; then
		_cached_build_log "binary built by a concurrent build ($(_cached_build_elapsed))"
		echo "$binary"
		return 0
	fi
	command -v go >/dev/null || { _cached_build_log "go is not on PATH"; return 1; }

	local staging="$binary.partial.$$"
	trap 'rm -rf "$staging" "$staging.d"' EXIT
	_cached_build_log "building $binary"
	"$build" "$staging"
	mv "$staging" "$binary"
	rm -rf "$staging.d"
	trap - EXIT
	_cached_build_log "done in $(_cached_build_elapsed)"
	echo "$binary"
}
