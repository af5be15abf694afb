// Package inspect decodes the pinned maps into what an operator reads: the
// frontends with their backends, and the backends with their users. It reads
// through package maps, the same package the agent writes with.
package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/socklb/socklb/pkg/lbmap"
)

// ServiceView is one frontend as the datapath sees it.
type ServiceView struct {
	Frontend    string        `json:"frontend"`
	Protocol    string        `json:"protocol"`
	Service     string        `json:"service"`
	ServiceID   uint32        `json:"service_id"`
	Flags       string        `json:"flags"`
	Active      int           `json:"active"`
	Terminating int           `json:"terminating"`
	Backends    []BackendSlot `json:"backends"`
	Problems    []string      `json:"problems,omitempty"`
}

// BackendSlot is a backend in one slot of a frontend.
type BackendSlot struct {
	Slot      uint16 `json:"slot"`
	BackendID uint32 `json:"backend_id"`
	Address   string `json:"address"`
	State     string `json:"state"` // "active", or "terminating" for the fallback tail
}

// BackendView is one entry of the backends map.
type BackendView struct {
	ID       uint32   `json:"id"`
	Address  string   `json:"address"`
	Protocol string   `json:"protocol"`
	State    string   `json:"state"`
	UsedBy   []string `json:"used_by"`
}

type snapshot struct {
	services map[lbmap.ServiceKey]lbmap.ServiceValue
	backends map[uint32]lbmap.Backend
	names    map[uint32]lbmap.ServiceName
}

func read(m *lbmap.Maps) (*snapshot, error) {
	s := &snapshot{services: map[lbmap.ServiceKey]lbmap.ServiceValue{}, backends: map[uint32]lbmap.Backend{}, names: map[uint32]lbmap.ServiceName{}}
	skeys, svals, err := lbmap.Dump[lbmap.ServiceKey, lbmap.ServiceValue](m.Services)
	if err != nil {
		return nil, err
	}
	for i, k := range skeys {
		s.services[k] = svals[i]
	}
	bkeys, bvals, err := lbmap.Dump[uint32, lbmap.Backend](m.Backends)
	if err != nil {
		return nil, err
	}
	for i, k := range bkeys {
		s.backends[k] = bvals[i]
	}
	nkeys, nvals, err := lbmap.Dump[uint32, lbmap.ServiceName](m.ServiceNames)
	if err != nil {
		return nil, err
	}
	for i, k := range nkeys {
		s.names[k] = nvals[i]
	}
	return s, nil
}

// Services lists every frontend with the backends its master entry exposes,
// ordered by address, port and protocol.
func Services(m *lbmap.Maps) ([]ServiceView, error) {
	s, err := read(m)
	if err != nil {
		return nil, err
	}
	var masters []lbmap.ServiceKey
	for k := range s.services {
		if k.Slot == 0 {
			masters = append(masters, k)
		}
	}
	sort.Slice(masters, func(i, j int) bool { return keyLess(masters[i], masters[j]) })
	views := make([]ServiceView, 0, len(masters))
	for _, k := range masters {
		v := s.services[k]
		view := ServiceView{
			Frontend:    k.AddrPort().String(),
			Protocol:    lbmap.ProtoString(k.Proto),
			Service:     s.names[v.ServiceId].Get(),
			ServiceID:   v.ServiceId,
			Flags:       lbmap.FlagsString(v.Flags),
			Active:      int(v.Count),
			Terminating: int(v.Terminating),
			Backends:    []BackendSlot{},
		}
		for slot := uint16(1); int(slot) <= int(v.Count)+int(v.Terminating); slot++ {
			sk := k
			sk.Slot = slot
			sv, ok := s.services[sk]
			if !ok {
				view.Problems = append(view.Problems, fmt.Sprintf("slot %d is missing", slot))
				continue
			}
			state := "active"
			if slot > v.Count {
				state = "terminating"
			}
			b, ok := s.backends[sv.BackendId]
			addr := "?"
			if ok {
				addr = b.AddrPort().String()
			} else {
				view.Problems = append(view.Problems, fmt.Sprintf("slot %d names missing backend %d", slot, sv.BackendId))
			}
			view.Backends = append(view.Backends, BackendSlot{Slot: slot, BackendID: sv.BackendId, Address: addr, State: state})
		}
		views = append(views, view)
	}
	return views, nil
}

// Backends lists the backends map with the frontends that use each backend.
func Backends(m *lbmap.Maps) ([]BackendView, error) {
	s, err := read(m)
	if err != nil {
		return nil, err
	}
	usedBy := map[uint32][]string{}
	for k, v := range s.services {
		if k.Slot == 0 {
			continue
		}
		master := k
		master.Slot = 0
		if _, ok := s.services[master]; ok {
			usedBy[v.BackendId] = append(usedBy[v.BackendId], fmt.Sprintf("%s/%s", k.AddrPort(), lbmap.ProtoString(k.Proto)))
		}
	}
	views := make([]BackendView, 0, len(s.backends))
	for id, b := range s.backends {
		users := usedBy[id]
		sort.Strings(users)
		if users == nil {
			users = []string{}
		}
		views = append(views, BackendView{
			ID:       id,
			Address:  b.AddrPort().String(),
			Protocol: lbmap.ProtoString(b.Proto),
			State:    lbmap.BackendStateString(b.State),
			UsedBy:   users,
		})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].ID < views[j].ID })
	return views, nil
}

func keyLess(a, b lbmap.ServiceKey) bool {
	ap, bp := a.AddrPort(), b.AddrPort()
	if c := ap.Addr().Compare(bp.Addr()); c != 0 {
		return c < 0
	}
	if ap.Port() != bp.Port() {
		return ap.Port() < bp.Port()
	}
	return a.Proto < b.Proto
}

// Format is an output format of socklb inspect.
type Format string

const (
	Table Format = "table"
	JSON  Format = "json"
)

// ParseFormat checks an -o value.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Table, JSON:
		return Format(s), nil
	}
	return "", fmt.Errorf("unknown output format %q: want table or json", s)
}

// WriteServices prints views in format f.
func WriteServices(w io.Writer, f Format, views []ServiceView) error {
	if f == JSON {
		return writeJSON(w, views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONTEND\tPROTO\tSERVICE\tID\tFLAGS\tACTIVE\tTERMINATING\tBACKENDS")
	for _, v := range views {
		var backends []string
		for _, b := range v.Backends {
			s := fmt.Sprintf("%s#%d", b.Address, b.BackendID)
			if b.State != "active" {
				s += "(" + b.State + ")"
			}
			backends = append(backends, s)
		}
		if len(backends) == 0 {
			backends = []string{"<none: connects refused>"}
		}
		name := v.Service
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", v.Frontend, v.Protocol, name, v.ServiceID, v.Flags, v.Active, v.Terminating, strings.Join(backends, " "))
		for _, p := range v.Problems {
			fmt.Fprintf(tw, "\t\t\t\t\t\t\tPROBLEM: %s\n", p)
		}
	}
	return tw.Flush()
}

// WriteBackends prints views in format f.
func WriteBackends(w io.Writer, f Format, views []BackendView) error {
	if f == JSON {
		return writeJSON(w, views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tPROTO\tSTATE\tUSED BY")
	for _, v := range views {
		users := strings.Join(v.UsedBy, " ")
		if users == "" {
			users = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.ID, v.Address, v.Protocol, v.State, users)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
