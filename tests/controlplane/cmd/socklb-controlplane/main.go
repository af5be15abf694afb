// Command socklb-controlplane runs the test control plane of
// tests/controlplane in the foreground for a human: it prints the kubeconfig
// path and stops everything it started on Ctrl-C. tests/controlplane/start.sh
// builds the binaries first and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/socklb/socklb/tests/controlplane"
)

func main() {
	binDir := flag.String("bin-dir", "", "directory with kube-apiserver, kube-controller-manager and kubectl (default: build or reuse the cached build)")
	stateDir := flag.String("dir", "", "state directory to use and keep (default: a temporary directory removed on exit)")
	serviceRange := flag.String("service-cluster-ip-range", controlplane.DefaultServiceClusterIPRange, "Service CIDR(s), comma-separated for dual stack")
	var relays relayFlags
	flag.Var(&relays, "relay-kubeconfig", "NETNS=PATH: relay from NETNS's 127.0.0.1 to the API server and write a kubeconfig using it to PATH, for a client in a network namespace such as a CoreDNS pod (repeatable)")
	flag.Parse()

	logger, err := zap.NewDevelopment()
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating logger: %v\n", err)
		os.Exit(1)
	}
	if err := run(logger, *binDir, *stateDir, *serviceRange, relays); err != nil {
		logger.Error("control plane failed", zap.Error(err))
		os.Exit(1)
	}
}

func run(logger *zap.Logger, binDir, stateDir, serviceRange string, relays relayFlags) error {
	// Signals are caught before starting so a Ctrl-C during startup still
	// stops what was already started.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	startedAt := time.Now()
	cp, err := controlplane.Start(ctx, controlplane.Options{
		Dir:                   stateDir,
		BinDir:                binDir,
		ServiceClusterIPRange: serviceRange,
		Logger:                logger,
	})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	for _, r := range relays {
		addr, stop, err := controlplane.ServeInNetns(r.netns, strings.TrimPrefix(cp.APIServerURL, "https://"))
		if err != nil {
			return errors.Join(fmt.Errorf("relaying into %s: %w", r.netns, err), cp.Stop())
		}
		defer stop()
		if err := cp.WriteKubeconfigVia(r.kubeconfig, addr); err != nil {
			return errors.Join(err, cp.Stop())
		}
		logger.Info("relay ready", zap.String("netns", r.netns), zap.String("addr", addr), zap.String("kubeconfig", r.kubeconfig))
	}
	fmt.Printf(`control plane ready in %s
  apiserver:  %s
  kubeconfig: %s
  logs:       %s
              %s
              %s
  try:        export KUBECONFIG=%s; %s get --raw /readyz
press Ctrl-C to stop
`, time.Since(startedAt).Round(time.Millisecond), cp.APIServerURL, cp.KubeconfigPath,
		cp.Logs.Etcd, cp.Logs.APIServer, cp.Logs.ControllerManager, cp.KubeconfigPath, cp.KubectlPath)

	<-ctx.Done()
	logger.Info("stopping control plane")
	if err := cp.Stop(); err != nil {
		return err
	}
	return nil
}

// relay is one -relay-kubeconfig NETNS=PATH.
type relay struct{ netns, kubeconfig string }

type relayFlags []relay

func (r *relayFlags) String() string { return fmt.Sprint([]relay(*r)) }

func (r *relayFlags) Set(value string) error {
	netns, kubeconfig, ok := strings.Cut(value, "=")
	if !ok || netns == "" || kubeconfig == "" {
		return fmt.Errorf("parsing relay %q: want NETNS=PATH", value)
	}
	*r = append(*r, relay{netns, kubeconfig})
	return nil
}
