#!/usr/bin/env bash
# Makes the two base images the Dockerfile starts from, locally, under the
# public names it uses, because no image registry is reachable here:
#
#   docker.io/library/debian:bookworm-slim  mmdebstrap --variant=minbase of
#                                           bookworm, slimmed like the official
#                                           image (no man pages, docs, locales)
#   docker.io/library/golang:1.26-bookworm  that base plus this machine's Go
#                                           toolchain (/usr/local/go) and the
#                                           packages and environment of the
#                                           official golang image
#
# Each is made only when `podman image exists` says it is missing (the golang
# one also when this machine's Go release differs from the one it carries), so
# a warm run costs a second. A cold run takes about a minute for the Debian
# base and half a minute for the golang one.
#
# Usage: image/bases.sh        needs root, podman and mmdebstrap
set -euo pipefail

readonly DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
readonly GOLANG_IMAGE=docker.io/library/golang:1.26-bookworm
readonly GO_SERIES=go1.26
readonly GO_ROOT=${GO_ROOT:-/usr/local/go}
# The official image's sources: the release, its updates and its security fixes.
readonly APT_SOURCES=(
	"deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main"
)
# What debuerreotype's --slimify drops from the official -slim images.
readonly SLIM_DPKG_OPTIONS=(
	--dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/doc/*'
	--dpkgopt='path-include=/usr/share/doc/*/copyright'
	--dpkgopt='path-exclude=/usr/share/groff/*'
	--dpkgopt='path-exclude=/usr/share/info/*'
	--dpkgopt='path-exclude=/usr/share/linda/*'
	--dpkgopt='path-exclude=/usr/share/lintian/*'
	--dpkgopt='path-exclude=/usr/share/locale/*'
)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[bases.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The official images have a merged /usr without the usrmerge package (which
# would pull perl into the image), and no device nodes: the runtime makes /dev.
make_debian_image() {
	local work
	work=$(mktemp -d "${TMPDIR:-/tmp}/socklb-bases.XXXXXX")
	# shellcheck disable=SC2064 # expand now: $work is local
	trap "rm -rf '$work'" RETURN
	log "making $DEBIAN_IMAGE with mmdebstrap (about a minute)"
	mmdebstrap --quiet --variant=minbase \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--skip=output/dev \
		"${SLIM_DPKG_OPTIONS[@]}" \
		bookworm "$work/rootfs.tar" "${APT_SOURCES[@]}" >&2
	podman import --quiet --change 'CMD ["bash"]' "$work/rootfs.tar" "$DEBIAN_IMAGE" >/dev/null
}

# Prints this machine's Go release (go1.26.8) after checking it is of the
# series the golang image's tag names.
host_go_release() {
	local release
	if [[ ! -x "$GO_ROOT/bin/go" || ! -r "$GO_ROOT/VERSION" ]]; then
		log "reading the Go toolchain: no $GO_ROOT/bin/go or $GO_ROOT/VERSION"
		return 1
	fi
	release=$(head -n 1 "$GO_ROOT/VERSION")
	if [[ $release != "$GO_SERIES" && $release != "$GO_SERIES".* ]]; then
		log "checking the Go toolchain: $GO_ROOT is $release, $GOLANG_IMAGE needs $GO_SERIES"
		return 1
	fi
	printf '%s\n' "$release"
}

# The Go release the golang image carries (empty when it is missing).
image_go_release() {
	podman image exists "$GOLANG_IMAGE" || return 0
	podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$GOLANG_IMAGE" |
		sed -n 's/^GOLANG_VERSION=/go/p'
}

# The toolchain directory is the build context, so COPY . takes all of it.
make_golang_image() {
	local release=$1
	log "making $GOLANG_IMAGE from $DEBIAN_IMAGE and $GO_ROOT ($release)"
	podman build --quiet --pull=never --isolation=chroot \
		--build-arg "GOLANG_VERSION=${release#go}" \
		--file "$script_dir/golang.Containerfile" \
		--tag "$GOLANG_IMAGE" "$GO_ROOT" >/dev/null
}

main() {
	local release
	release=$(host_go_release)
	if podman image exists "$DEBIAN_IMAGE"; then
		log "$DEBIAN_IMAGE is there"
	else
		make_debian_image
	fi
	if [[ $(image_go_release) == "$release" ]]; then
		log "$GOLANG_IMAGE is there ($release)"
	else
		make_golang_image "$release"
	fi
}

main "$@"
