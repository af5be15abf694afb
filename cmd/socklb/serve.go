package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/agent"
	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/metrics"
	"github.com/socklb/socklb/pkg/proxyhealth"
	"github.com/socklb/socklb/pkg/source"
)

// serveFlags are where the agent serves its metrics and its health.
type serveFlags struct {
	metricsAddress string
	healthzAddress string
	healthzTimeout time.Duration
	profiling      bool
}

func (f *serveFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.metricsAddress, "metrics-address", metrics.DefaultAddress, "address of the Prometheus /metrics endpoint, kube-proxy's metrics names where the meaning is the same; empty: none")
	cmd.Flags().StringVar(&f.healthzAddress, "healthz-address", proxyhealth.DefaultAddress, "address of the /healthz and /livez endpoints, answered like kube-proxy's; empty: none")
	cmd.Flags().BoolVar(&f.profiling, "profiling", false, "serve Go's profiles under /debug/pprof/ on the metrics address, as kube-proxy's --profiling does")
	cmd.Flags().DurationVar(&f.healthzTimeout, "healthz-timeout", proxyhealth.DefaultTimeout, "how long a change may wait for a successful sync before /healthz and /livez answer 503")
}

// retryListen is how long a server waits before trying to listen again,
// as kube-proxy's servers do: a port another process holds is no reason
// to stop balancing.
const retryListen = 5 * time.Second

// observers are the metrics and the proxy health, each nil when off.
type observers struct {
	metrics *metrics.Metrics
	health  *proxyhealth.Health
}

// startServers serves the metrics and the health the flags ask for, until
// ctx is done.
func startServers(ctx context.Context, f serveFlags, maps *lbmap.Maps, src source.Source, log *zap.Logger) observers {
	var o observers
	if f.metricsAddress != "" {
		changes, _ := src.(source.ChangeCounter)
		o.metrics = metrics.New(maps, changes)
		mux := http.NewServeMux()
		mux.Handle("/metrics", o.metrics.Handler(log.Named("metrics")))
		if f.profiling {
			// pprof.Index serves every named profile (heap, goroutine, ...)
			// below its prefix; the other four are not named profiles.
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		go serve(ctx, "metrics", f.metricsAddress, mux, log)
	}
	if f.healthzAddress != "" {
		// Only a cluster has a Node whose deletion /healthz reports.
		node, _ := src.(proxyhealth.NodeGetter)
		o.health = proxyhealth.New(f.healthzTimeout, node, time.Now)
		if o.metrics != nil {
			o.health.Served = o.metrics.HealthServed
		}
		go serve(ctx, "healthz", f.healthzAddress, o.health.Handler(), log)
	}
	return o
}

// serve serves h on addr until ctx is done, retrying to listen.
func serve(ctx context.Context, what, addr string, h http.Handler, log *zap.Logger) {
	var lastErr string
	for {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err == nil {
			log.Info("serving "+what, zap.String(logfield.Address, ln.Addr().String()))
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				srv.Close()
			}()
			if err = srv.Serve(ln); errors.Is(err, http.ErrServerClosed) {
				return
			}
		}
		if err.Error() != lastErr {
			log.Error("serve "+what+"; retrying", zap.String(logfield.Address, addr), zap.Error(err))
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryListen):
		}
	}
}

// hook fills the agent's hooks, keeping those already set.
func (o observers) hook(cfg *agent.Config) {
	cfg.OnQueued = func() {
		if o.metrics != nil {
			o.metrics.Queued()
		}
		if o.health != nil {
			o.health.Queued()
		}
	}
	cfg.OnSync = func(r agent.SyncReport) {
		if o.metrics != nil {
			o.metrics.Synced(r)
		}
		if o.health != nil {
			o.health.Synced(r.Err)
		}
	}
	if o.metrics == nil {
		return
	}
	if problem := cfg.OnProblem; problem != nil {
		cfg.OnProblem = func(e *desired.ObjectError) {
			o.metrics.ObjectError(e)
			problem(e)
		}
	} else {
		cfg.OnProblem = o.metrics.ObjectError
	}
	if repair := cfg.RepairDatapath; repair != nil {
		cfg.RepairDatapath = func() ([]string, error) {
			repaired, err := repair()
			o.metrics.PinsRepaired(repaired)
			return repaired, err
		}
	}
}
