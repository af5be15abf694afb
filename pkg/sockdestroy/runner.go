package sockdestroy

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/syncer"
)

// Runner destroys, after each sync, the sockets that sync left stale.
type Runner struct {
	d    *Destroyer // nil: the kernel cannot, and the runner does nothing
	maps *lbmap.Maps
	log  *zap.Logger
}

// NewRunner loads the iterator for the agent. On a kernel without
// bpf_sock_destroy it says once, at info level, what socklb cannot do, and
// returns a runner that does nothing; any other failure is an error.
func NewRunner(maps *lbmap.Maps, log *zap.Logger) (*Runner, error) {
	d, err := Load(maps)
	if errors.Is(err, ebpf.ErrNotSupported) {
		log.Info("connected UDP sockets to removed backends are not destroyed: they keep sending to the old backend until the application reconnects",
			zap.String(logfield.Reason, err.Error()))
		return &Runner{maps: maps, log: log}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Runner{d: d, maps: maps, log: log}, nil
}

// Close releases the iterator.
func (r *Runner) Close() error {
	if r.d == nil {
		return nil
	}
	return r.d.Close()
}

// AfterSync destroys what a sync that succeeded left stale. Failures are
// logged: the sync itself is done, and the next one that removes a backend
// tries again.
func (r *Runner) AfterSync(state *desired.State, res syncer.Result) {
	if r.d == nil {
		return
	}
	w := WorkOf(state, res)
	keys := VIPKeys(w.NewVIPs)
	if w.Stale {
		stale, err := r.staleSockets(state)
		if err != nil {
			r.log.Warn("find stale UDP sockets", zap.Error(err))
		}
		keys = append(keys, stale...)
	}
	if len(keys) == 0 {
		return
	}
	destroyed, err := r.d.Destroy(keys)
	if err != nil {
		r.log.Warn("destroy stale UDP sockets", zap.Error(err))
	}
	if len(destroyed) > 0 {
		r.log.Info("destroyed connected UDP sockets whose backend is gone", zap.Int(logfield.Sockets, len(destroyed)))
		r.log.Debug("destroyed sockets", zap.Uint64s(logfield.Cookies, destroyed))
	}
}

// staleSockets reads the per-socket reverse-NAT entries and the frontends
// by service id, and picks the stale ones.
func (r *Runner) staleSockets(state *desired.State) ([]lbmap.SockKey, error) {
	keys, values, err := lbmap.Dump[lbmap.SockKey, lbmap.SockRevNat](r.maps.SockRevNat)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lbmap.SockRevNatMap, err)
	}
	// Connected sockets keep their entry in socket-local storage where the
	// kernel has it: the iterator lists those.
	listed, err := r.d.List()
	for _, l := range listed {
		keys, values = append(keys, l.Key), append(values, l.Value)
	}
	if err != nil {
		r.log.Warn("list connected UDP sockets", zap.Error(err))
	}
	ids, fes, err := lbmap.Dump[uint32, lbmap.RevNat](r.maps.RevNat)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lbmap.RevNatMap, err)
	}
	frontends := make(map[uint32]lbmap.RevNat, len(ids))
	for i, id := range ids {
		frontends[id] = fes[i]
	}
	return StaleSockets(keys, values, frontends, state), nil
}
