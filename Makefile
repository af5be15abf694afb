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

.PHONY: all deps generate check-generate build test fuzz test-unit test-cluster demo demo-cluster bench bench-propagation bench-deps bench-kube-proxy bench-quick k8s-binaries clean

all: build

# Debian packages for compiling BPF and building sandboxes; installed only when missing.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(GO) mod download

# Regenerates the bpf2go output (committed, so `go build` needs no clang):
# the layouts object in pkg/lbmap, the program objects in pkg/datapath.
BPF2GO_PKGS := ./pkg/lbmap/ ./pkg/datapath/
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

# Bounded fuzzing, each target for FUZZTIME; the seed corpora are in
# pkg/source/dir/testdata/fuzz and pkg/desired/testdata/fuzz.
FUZZTIME ?= 20s
# Minimizing an interesting input takes a minute by default, which leaves a
# 20 s run no time to fuzz, and a minimization still running at the deadline
# fails the run ("context deadline exceeded"): a bounded number of tries.
FUZZMINIMIZETIME ?= 100x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeFile$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) ./pkg/source/dir/
	$(GO) test -run '^$$' -fuzz '^FuzzBuild$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) ./pkg/desired/

test-unit:
	$(GO) test $(TEST_FLAGS) ./pkg/...

demo: deps build
	./demo/standalone.sh $(SOCKLB)

# Figures, not assertions: compare the rows of one run, the machine is noisy.
# The Kubernetes binaries the cluster tests run (cached under .cache/k8s).
k8s-binaries: deps
	./tests/controlplane/build.sh

# Cluster mode against a real control plane: the harness's own test, then the
# seed documents' kubectl flows.
test-cluster: deps build k8s-binaries
	$(GO) test $(TEST_FLAGS) -p 1 -timeout 30m -tags 'cluster controlplane' ./tests/controlplane/ ./tests/cluster/

demo-cluster: deps build k8s-binaries
	./demo/cluster.sh $(SOCKLB)

# Time from an EndpointSlice write to a client reaching the new backend, at
# 100 and 10,000 Services (several minutes: it creates 10,000 Services).
bench-propagation: deps build k8s-binaries
	$(GO) test -tags cluster -run '^$$' -bench Propagation -benchtime 1x -timeout 60m ./tests/cluster/

bench: deps build
	$(GO) test -run '^$$' -bench 'Connect4|Sendmsg4' -benchtime 2000x ./tests/e2e/
	$(GO) test -run '^$$' -bench NodePortRequestRate -benchtime 1x ./tests/e2e/
	$(GO) test -run '^$$' -bench 'ColdStart30000|OneFileChange30000' -benchtime 1x -timeout 20m ./pkg/source/dir/
	$(MAKE) --no-print-directory bench-kube-proxy

# socklb against kube-proxy (iptables and nftables modes) and no proxy, on one
# node namespace and one control plane, in alternating rounds; writes
# docs/benchmarks.md and docs/bench-*.png. bench-kube-proxy runs 10 to 30,000
# Services (over an hour), bench-quick 10 and 1,000 (under 10 minutes).
BENCH_APT_PKGS := iptables nftables iperf3 wrk conntrack
BENCH_FLAGS    ?=
bench-deps:
	@missing=""; for p in $(BENCH_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

bench-kube-proxy: deps k8s-binaries bench-deps
	$(GO) test -tags bench -run '^TestCompareProxies$$' -v -count=1 -timeout 6h ./tests/bench/ \
		-args -bench.command 'make bench-kube-proxy' $(BENCH_FLAGS)

bench-quick: deps k8s-binaries bench-deps
	$(GO) test -tags bench -run '^TestCompareProxies$$' -v -count=1 -timeout 20m ./tests/bench/ \
		-args -bench.scales 10,1000 -bench.rounds 2 -bench.command 'make bench-quick' $(BENCH_FLAGS)

clean:
	rm -rf $(BIN)
