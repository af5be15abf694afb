# socklb. `make demo` and `make test` work on a fresh Debian machine as root:
# they install what they need first.

GO        ?= go
BIN       := bin
SOCKLB    := $(BIN)/socklb
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GO_BUILD  := CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)"
APT_PKGS  := clang llvm bpftool libbpf-dev iproute2 curl wrk
# Kernel e2e tests need root; CI=true turns their skips into failures.
TEST_FLAGS ?= -count=1

.PHONY: all deps generate check-generate build test fuzz test-unit test-cluster demo demo-cluster bench bench-propagation k8s-binaries clean helm deploy-manifest test-deploy image test-image coredns names-deps bench-deps bench-kube-proxy bench-10000 bench-30000 bench-quick

# Installs those of the Debian packages $(1) that are missing, with apt-get
# options $(2) (the index is refreshed only when something must be installed).
apt_install = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing >/dev/null; \
	fi

all: build

# Debian packages for compiling BPF and building sandboxes; installed only when missing.
deps:
	@$(call apt_install,$(APT_PKGS))
	$(GO) mod download

# Regenerates the bpf2go output (committed, so `go build` needs no clang):
# the layouts object in pkg/lbmap, the program objects in pkg/datapath, the
# socket-destroying iterator in pkg/sockdestroy.
BPF2GO_PKGS := ./pkg/lbmap/ ./pkg/datapath/ ./pkg/sockdestroy/
generate: deps
	$(GO) generate $(BPF2GO_PKGS)

# CI: the committed BPF objects must be what the sources compile to.
check-generate: generate
	@untracked=$$(git ls-files --others --exclude-standard -- $(addsuffix '*_bpfel.*',$(BPF2GO_PKGS))); if [ -n "$$untracked" ]; then echo "generated files not committed: $$untracked" >&2; exit 1; fi
	git diff --exit-code -- $(BPF2GO_PKGS) || (echo "generated BPF objects are stale: run make generate and commit" >&2; exit 1)

build:
	@mkdir -p $(BIN)
	$(GO_BUILD) -o $(SOCKLB) ./cmd/socklb

test: deps build
	@unformatted=$$(gofmt -l cmd pkg tests); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...
	$(MAKE) --no-print-directory fuzz

# Bounded fuzzing, each target for a number of executions (about 20 s
# each here); the seed corpora are in pkg/source/dir/testdata/fuzz and
# pkg/desired/testdata/fuzz. A count, not a duration: with -fuzztime=20s
# Go's fuzzing coordinator (before Go 1.27, golang/go#75804) can fail a run
# at the deadline with "context deadline exceeded" and no failing input, as
# a loaded CI run showed. The go test timeout bounds the time.
FUZZ_DECODE_FILE ?= 50000x
FUZZ_YAML_TO_JSON ?= 60000x
FUZZ_BUILD ?= 250000x
# Minimizing an interesting input takes a minute by default, which would
# outlast the run: a bounded number of tries.
FUZZMINIMIZETIME ?= 100x
FUZZ_FLAGS = -run '^$$' -fuzzminimizetime=$(FUZZMINIMIZETIME) -timeout=5m
fuzz:
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzDecodeFile$$' -fuzztime=$(FUZZ_DECODE_FILE) ./pkg/source/dir/
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzYAMLToJSON$$' -fuzztime=$(FUZZ_YAML_TO_JSON) ./pkg/source/dir/
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzBuild$$' -fuzztime=$(FUZZ_BUILD) ./pkg/desired/

test-unit:
	$(GO) test $(TEST_FLAGS) ./pkg/...

# The kernel matrix: the kernel-facing tests as static binaries on the host's
# kernel and in qemu guests of Debian's 5.10, 6.1 and 6.12 cloud kernels
# (tests/vm; the packages are cached under .cache/vm). TAP lines per test,
# then a table per kernel. VM_FLAGS passes options, e.g. -kernels 6.1.
VM_APT_PKGS := qemu-system-x86 xz-utils
VM_FLAGS ?=
.PHONY: test-vm
test-vm: deps
	@$(call apt_install,$(VM_APT_PKGS),--no-install-recommends)
	./tests/vm/fetch.sh
	$(GO) run ./tests/vm $(VM_FLAGS)

demo: deps build
	./demo/standalone.sh $(SOCKLB)

# Figures, not assertions: compare the rows of one run, the machine is noisy.
# The Kubernetes binaries the cluster tests run (cached under .cache/k8s).
k8s-binaries: deps
	./tests/controlplane/build.sh

# CoreDNS, the cluster DNS of the cluster tests and demo (cached under
# .cache/coredns).
coredns:
	./tests/coredns/build.sh >/dev/null

# The clients and servers of the stories by name, all Debian's: dig, musl-gcc
# and nginx, and for the demo MariaDB. Installed only when missing; the tests
# and the demo run them in their own namespaces, never as the machine's
# services.
NAMES_APT_PKGS := dnsutils musl-tools nginx
demo-cluster: NAMES_APT_PKGS += mariadb-server mariadb-client
names-deps:
	@$(call apt_install,$(NAMES_APT_PKGS))

# Cluster mode against a real control plane: the harness's own test, then the
# seed documents' kubectl flows.
test-cluster: deps build k8s-binaries helm coredns names-deps
	$(GO) test $(TEST_FLAGS) -p 1 -timeout 30m -tags 'cluster controlplane' ./tests/controlplane/ ./tests/cluster/ ./tests/deploy/

# helm, built from the Go module proxy (not a Debian package) and cached
# under .cache/helm.
helm:
	./tests/controlplane/build-helm.sh >/dev/null

# deploy/socklb.yaml is the chart rendered with its defaults; tests/deploy
# fails when the two differ.
DEPLOY_TEMPLATE := template socklb deploy/helm/socklb --namespace kube-system
deploy-manifest: helm
	@helm=$$(./tests/controlplane/build-helm.sh 2>/dev/null) && { \
		echo '# Generated from the Helm chart deploy/helm/socklb by `make deploy-manifest`'; \
		echo '# (helm $(DEPLOY_TEMPLATE)): edit the chart, not this file.'; \
		"$$helm" $(DEPLOY_TEMPLATE); \
	} > deploy/socklb.yaml.tmp && mv deploy/socklb.yaml.tmp deploy/socklb.yaml

# The chart, the plain manifest, the RBAC against a real API server and the
# DaemonSet's capabilities (a kernel sandbox: root).
test-deploy: deps build k8s-binaries helm
	$(GO) test $(TEST_FLAGS) -timeout 20m -tags controlplane ./tests/deploy/

demo-cluster: deps build k8s-binaries coredns names-deps
	./demo/cluster.sh $(SOCKLB)

# Time from an EndpointSlice write to a client reaching the new backend, at
# 100 and 10,000 Services (several minutes: it creates 10,000 Services).
bench-propagation: deps build k8s-binaries
	$(GO) test -tags cluster -run '^$$' -bench Propagation -benchtime 1x -timeout 60m ./tests/cluster/

bench: deps build
	$(GO) test -run '^$$' -bench 'Connect4|Sendmsg4|SocketState' -benchtime 2000x ./tests/e2e/
	$(GO) test -run '^$$' -bench NodePortRequestRate -benchtime 1x ./tests/e2e/
	$(GO) test -run '^$$' -bench 'ColdStart30000|OneFileChange30000' -benchtime 1x -timeout 20m ./pkg/source/dir/
	$(GO) test -run '^$$' -bench Standalone30000 -benchtime 1x -timeout 20m ./tests/e2e/
	$(MAKE) --no-print-directory bench-kube-proxy

# socklb against kube-proxy (iptables and nftables modes) and no proxy, on one
# node namespace and one control plane, in alternating rounds; writes
# docs/benchmarks.md and docs/bench-*.png. bench-kube-proxy runs 10 to 30,000
# Services in two rounds (about two hours: at 30,000 the API server alone takes
# 20 to 28 minutes to create the Services, and kube-proxy iptables had not
# programmed them after the 45-minute limit in either run so far, so it is not
# run again in round 2), bench-30000 30,000 in one round into
# docs/bench-30000/ (about 75 minutes), bench-10000 10 to 10,000 in two rounds
# (about 22 minutes, most of it kube-proxy iptables programming 10,000
# Services), bench-quick 10 and 1,000 (under 10 minutes).
BENCH_APT_PKGS := iptables nftables iperf3 wrk conntrack
BENCH_FLAGS    ?=
bench-deps:
	@$(call apt_install,$(BENCH_APT_PKGS))

bench-kube-proxy: deps k8s-binaries bench-deps
	$(GO) test -tags bench -run '^TestCompareProxies$$' -v -count=1 -timeout 6h ./tests/bench/ \
		-args -bench.rounds 2 -bench.command 'make bench-kube-proxy' $(BENCH_FLAGS)

bench-10000: deps k8s-binaries bench-deps
	$(GO) test -tags bench -run '^TestCompareProxies$$' -v -count=1 -timeout 90m ./tests/bench/ \
		-args -bench.scales 10,1000,10000 -bench.rounds 2 -bench.command 'make bench-10000' $(BENCH_FLAGS)

bench-30000: deps k8s-binaries bench-deps
	$(GO) test -tags bench -run '^TestCompareProxies$$' -v -count=1 -timeout 3h ./tests/bench/ \
		-args -bench.scales 30000 -bench.rounds 1 -bench.out $(CURDIR)/docs/bench-30000 -bench.command 'make bench-30000' $(BENCH_FLAGS)

bench-quick: deps k8s-binaries bench-deps
	$(GO) test -tags bench -run '^TestCompareProxies$$' -v -count=1 -timeout 20m ./tests/bench/ \
		-args -bench.scales 10,1000 -bench.rounds 2 -bench.command 'make bench-quick' $(BENCH_FLAGS)

# The image (Dockerfile), built with podman against base images that
# image/bases.sh makes locally under the public names (no registry is reachable
# here). chroot isolation: the default one fails here ("cgroups in hybrid mode
# not supported"). The modules come from the host's download cache, mounted in
# as a file:// GOPROXY, so the build fetches none itself.
IMAGE      ?= localhost/socklb
# The repository the Helm chart's values name, so a node can load this build
# (podman save | ctr import) and run the chart unchanged.
CHART_IMAGE := docker.io/socklb/socklb
IMAGE_PKGS := podman mmdebstrap
GOMODCACHE_DOWNLOAD = $(shell $(GO) env GOMODCACHE)/cache/download
image:
	@$(call apt_install,$(IMAGE_PKGS))
	$(GO) mod download
	./image/bases.sh
	podman build --pull=never --isolation=chroot \
		--volume $(GOMODCACHE_DOWNLOAD):/run/goproxy:ro --build-arg GOPROXY=file:///run/goproxy \
		--build-arg VERSION=$(VERSION) --build-arg BPF2GO_PKGS="$(BPF2GO_PKGS)" --tag $(IMAGE):$(VERSION) --tag $(IMAGE):latest --tag $(CHART_IMAGE):$(VERSION) .
	@podman image inspect --format '{{.Size}}' $(IMAGE):$(VERSION) | \
		awk '{ printf "image $(IMAGE):$(VERSION): %.1f MB (%d bytes)\n", $$1 / 1e6, $$1 }'

# Checks the built image from outside a container runtime (podman run fails
# here): its root mounted, its programs run in a chroot of it.
test-image:
	SOCKLB_IMAGE=$(IMAGE):$(VERSION) SOCKLB_IMAGE_VERSION=$(VERSION) $(GO) test $(TEST_FLAGS) -v -tags image ./tests/image/

clean:
	rm -rf $(BIN)
