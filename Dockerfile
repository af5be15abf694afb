# socklb's image: the agent and bpftool on Debian bookworm.
#
#   make image     builds it with podman (base images made locally first)
#   docker build --build-arg VERSION=$(git describe --always --dirty) .
#
# The builder recompiles the BPF objects with a pinned clang and refuses to go
# on when they differ from the committed ones, so the binary embeds objects a
# reader of bpf/ can reproduce.

FROM docker.io/library/golang:1.26-bookworm AS builder

# bookworm's clang 14, the compiler the committed objects were made with:
# another clang emits other bytes. bpf2go runs `clang` and `llvm-strip`, which
# the clang and llvm packages provide; libbpf-dev brings bpf_helpers.h.
ARG CLANG_VERSION=1:14.0.6-12
ARG CLANG_DEFAULT_VERSION=1:14.0-55.7~deb12u1
ARG LIBBPF_VERSION=1:1.1.2-0+deb12u1
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		clang-14="${CLANG_VERSION}" llvm-14="${CLANG_VERSION}" \
		clang="${CLANG_DEFAULT_VERSION}" llvm="${CLANG_DEFAULT_VERSION}" \
		libbpf-dev="${LIBBPF_VERSION}" \
	&& rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Empty means Go's default proxy. `make image` passes file:///run/goproxy, the
# host's module download cache mounted into the build (-v): the host fetched
# the modules already, and the build needs no network for them.
ARG GOPROXY
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
	go mod download

# Only what the binary is made of, so a change to tests or docs reuses the layers.
COPY bpf/ bpf/
COPY cmd/ cmd/
COPY pkg/ pkg/
# The packages bpf2go writes into (the Makefile's BPF2GO_PKGS).
ARG BPF2GO_PKGS="./pkg/lbmap/ ./pkg/datapath/ ./pkg/sockdestroy/"
RUN --mount=type=cache,target=/go/pkg/mod \
	--mount=type=cache,target=/root/.cache/go-build \
	find ${BPF2GO_PKGS} -maxdepth 1 -name '*_bpfel.*' -exec sha256sum {} + > /tmp/committed.sha256 \
	&& go generate ${BPF2GO_PKGS} \
	&& if ! sha256sum --check --quiet /tmp/committed.sha256; then \
		echo "generated BPF objects differ from the committed ones: run make generate and commit" >&2; exit 1; \
	fi

ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
	--mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
		-o /out/socklb ./cmd/socklb

FROM docker.io/library/debian:bookworm-slim

# bpftool reads the pinned maps and links the agent keeps (`bpftool map dump
# pinned /sys/fs/bpf/socklb/...`). Not pinned: it follows bookworm's kernel
# security updates, and an old version leaves the mirror.
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bpftool \
	&& rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

COPY --from=builder /out/socklb /usr/local/bin/socklb

ARG VERSION=dev
LABEL org.opencontainers.image.title="socklb" \
	org.opencontainers.image.description="kube-proxy replacement with BPF socket hooks" \
	org.opencontainers.image.version="${VERSION}"

ENTRYPOINT ["/usr/local/bin/socklb"]
CMD ["agent"]
