#!/usr/bin/env bash
# Fetches the Debian packages the kernel matrix boots and unpacks them under
# CACHE (default .cache/vm): the kernel images with their modules, and busybox
# for the guest's init (the tools the tests exec, nsenter and bpftool, are the
# host's own, copied with their libraries by the driver). A private
# apt configuration (sources, lists, cache, an empty dpkg status) leaves the
# machine's own apt setup untouched. Idempotent: an unpacked package is kept.
set -euo pipefail

CACHE=$(mkdir -p "${CACHE:-.cache/vm}" && cd "${CACHE:-.cache/vm}" && pwd)
APT=$CACHE/apt
MIRROR=${VM_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# The kernels of the matrix: name, suite, package. The cloud flavour has
# veth, sch_ingress, cls_bpf and act_bpf as modules and boots fastest.
KERNELS=(
	"5.10 bullseye ^linux-image-5\.10\.0-[0-9]+-cloud-amd64$"
	"6.1 bookworm ^linux-image-6\.1\.0-[0-9]+-cloud-amd64$"
	"6.12 trixie ^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64$"
)
TOOLS="busybox-static"

private_options() {
	echo -o Dir::Etc::SourceList="$APT/sources.list" \
		-o Dir::Etc::SourceParts="$APT/sources.list.d" \
		-o Dir::State="$APT/state" -o Dir::State::status="$APT/state/status" \
		-o Dir::Cache="$APT/cache" -o Dir::Etc::Preferences=/dev/null \
		-o Dir::Etc::PreferencesParts="$APT/preferences.d"
}

apt_private() {
	# shellcheck disable=SC2046 # the options are words without spaces
	apt-get -q $(private_options) -o APT::Get::List-Cleanup=0 \
		-o APT::Sandbox::User=root -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false "$@"
}

setup_apt() {
	mkdir -p "$APT/sources.list.d" "$APT/preferences.d" "$APT/state/lists/partial" "$APT/cache/archives/partial"
	touch "$APT/state/status"
	: >"$APT/sources.list"
	for suite in bullseye bookworm trixie; do
		echo "deb [signed-by=$KEYRING] $MIRROR $suite main" >>"$APT/sources.list"
	done
	# Lists older than a day are refreshed; otherwise a warm run asks no mirror.
	if [ -z "$(find "$APT/state/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
		if ! apt_private update >/dev/null; then
			ls "$APT/state/lists/"*Packages* >/dev/null 2>&1 || exit 1
			echo "fetch: apt-get update failed: using the package lists cached before" >&2
		fi
	fi
}

# newest_package REGEX: the newest binary package whose name matches REGEX
# (each kernel ABI is in one suite only).
newest_package() {
	# shellcheck disable=SC2046
	apt-cache $(private_options) search --names-only "$1" | awk '{print $1}' | sort -V | tail -1
}

# download PACKAGE SUITE DIR: the .deb of PACKAGE from SUITE, unpacked into DIR.
download() {
	local pkg=$1 suite=$2 dir=$3
	[ -e "$dir/.unpacked" ] && return 0
	local debs=$CACHE/debs
	mkdir -p "$debs" "$dir"
	(cd "$debs" && apt_private download "$pkg/$suite" >/dev/null)
	local deb
	deb=$(ls -t "$debs/${pkg}_"*.deb | head -1)
	dpkg-deb -x "$deb" "$dir"
	touch "$dir/.unpacked"
}

main() {
	setup_apt
	for k in "${KERNELS[@]}"; do
		read -r name suite pattern <<<"$k"
		local pkg
		pkg=$(newest_package "$pattern")
		if [ -z "$pkg" ]; then
			echo "fetch: no package $pattern in $suite" >&2
			exit 1
		fi
		# A newer ABI in the suite replaces the one unpacked before.
		if [ "$(cat "$CACHE/kernel-$name/.package" 2>/dev/null)" != "$pkg" ]; then
			rm -rf "$CACHE/kernel-$name"
		fi
		download "$pkg" "$suite" "$CACHE/kernel-$name"
		echo "$pkg" >"$CACHE/kernel-$name/.package"
	done
	for t in $TOOLS; do
		download "$t" bookworm "$CACHE/tools/$t"
	done
}

main "$@"
