// Package healthcheck answers the health checks of Services with
// externalTrafficPolicy: Local, on their healthCheckNodePort, exactly as
// kube-proxy does: an outside load balancer asks every node and sends traffic
// only to the nodes that answer 200, the ones with a local endpoint.
//
// The answer is 200 while the Service has a ready endpoint on this node and
// the agent is healthy, 503 otherwise; the JSON body names the Service and
// counts the local endpoints, and X-Load-Balancing-Endpoint-Weight carries
// the count too.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/socklb/socklb/pkg/logfield"
	"go.uber.org/zap"
)

// ServiceRef names a Service.
type ServiceRef struct{ Namespace, Name string }

func (r ServiceRef) String() string { return r.Namespace + "/" + r.Name }

// Service is one Service's health check as the desired state asks for it.
type Service struct {
	Port           uint16 // spec.healthCheckNodePort
	LocalEndpoints int    // ready endpoints on this node
}

// Server runs one HTTP listener per Service and node address.
type Server struct {
	log   *zap.Logger
	addrs []netip.Addr // where to listen; none: every address
	// healthy reports whether the agent keeps the datapath in sync; a node
	// whose agent is stuck is reported unhealthy for every Service.
	healthy func() bool

	mu       sync.RWMutex
	services map[ServiceRef]*instance
}

type instance struct {
	port      uint16
	endpoints int
	servers   []*http.Server
}

// New makes a server that listens on addrs (all addresses when empty).
// healthy may be nil: always healthy.
func New(addrs []netip.Addr, healthy func() bool, log *zap.Logger) *Server {
	if healthy == nil {
		healthy = func() bool { return true }
	}
	return &Server{log: log, addrs: slices.Clone(addrs), healthy: healthy, services: map[ServiceRef]*instance{}}
}

// Sync makes the listeners match want: closes those of Services no longer
// there or whose port changed, opens new ones, updates endpoint counts. A
// port that cannot be opened fails only its Service; the error names each.
func (s *Server) Sync(want map[ServiceRef]Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, inst := range s.services {
		if w, ok := want[ref]; !ok || w.Port != inst.port {
			inst.close()
			delete(s.services, ref)
			s.log.Info("health check closed", zap.String(logfield.Service, ref.String()), zap.Uint16(logfield.Port, inst.port))
		}
	}
	var errs []error
	for ref, w := range want {
		if inst, ok := s.services[ref]; ok {
			inst.endpoints = w.LocalEndpoints
			continue
		}
		inst := &instance{port: w.Port, endpoints: w.LocalEndpoints}
		if err := s.listen(ref, inst); err != nil {
			errs = append(errs, fmt.Errorf("serve the health check of Service %s on port %d: %w", ref, w.Port, err))
			continue
		}
		s.services[ref] = inst
		s.log.Info("health check opened", zap.String(logfield.Service, ref.String()), zap.Uint16(logfield.Port, w.Port))
	}
	return errors.Join(errs...)
}

func (s *Server) listen(ref ServiceRef, inst *instance) error {
	hosts := []string{""}
	if len(s.addrs) > 0 {
		hosts = hosts[:0]
		for _, a := range s.addrs {
			hosts = append(hosts, a.String())
		}
	}
	for _, host := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(inst.port))))
		if err != nil {
			inst.close()
			return err
		}
		srv := &http.Server{Handler: handler{s: s, ref: ref}, ReadHeaderTimeout: 5 * time.Second}
		inst.servers = append(inst.servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("health check stopped", zap.String(logfield.Service, ref.String()), zap.Error(err))
			}
		}()
	}
	return nil
}

func (inst *instance) close() {
	for _, srv := range inst.servers {
		srv.Close()
	}
	inst.servers = nil
}

// Close stops every listener.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, inst := range s.services {
		inst.close()
		delete(s.services, ref)
	}
}

// Shutdown stops every listener, letting requests in flight finish until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for ref, inst := range s.services {
		for _, srv := range inst.servers {
			errs = append(errs, srv.Shutdown(ctx))
		}
		delete(s.services, ref)
	}
	return errors.Join(errs...)
}

type handler struct {
	s   *Server
	ref ServiceRef
}

func (h handler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.s.mu.RLock()
	inst, ok := h.s.services[h.ref]
	count := 0
	if ok {
		count = inst.endpoints
	}
	h.s.mu.RUnlock()
	healthy := h.s.healthy()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(count))
	if count > 0 && healthy {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	// kube-proxy's body, field for field: load balancers' checks parse it.
	fmt.Fprintf(w, "{\n\t\"service\": {\n\t\t\"namespace\": %q,\n\t\t\"name\": %q\n\t},\n\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": %v\n}",
		h.ref.Namespace, h.ref.Name, count, healthy)
}
