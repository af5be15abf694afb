// Package inspect decodes the pinned maps into what an operator reads: the
// frontends with their backends, and the backends with their users. It reads
// through package lbmap, the same package the agent writes with, and decodes
// slots with the decoder the agent restores from (lbmap.DecodeFrontends).
package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
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
	// Internal is what clients on the node get instead when the frontend
	// has a second scope (its master carries TwoScopes).
	Internal *ScopeView `json:"internal,omitempty"`
}

// ScopeView is the internal scope of a frontend.
type ScopeView struct {
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
	frontends []lbmap.Frontend // ordered by address, port, protocol, scope
	backends  map[uint32]lbmap.Backend
	names     map[uint32]lbmap.ServiceName
}

func read(t lbmap.Tables) (*snapshot, error) {
	s := &snapshot{backends: map[uint32]lbmap.Backend{}, names: map[uint32]lbmap.ServiceName{}}
	bkeys, bvals, err := t.Backends.Dump()
	if err != nil {
		return nil, err
	}
	for i, k := range bkeys {
		s.backends[k] = bvals[i]
	}
	skeys, svals, err := t.Services.Dump()
	if err != nil {
		return nil, err
	}
	s.frontends = lbmap.DecodeFrontends(skeys, svals, func(id uint32) bool { _, ok := s.backends[id]; return ok })
	nkeys, nvals, err := t.ServiceNames.Dump()
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
	return services(m.Tables())
}

func services(t lbmap.Tables) ([]ServiceView, error) {
	s, err := read(t)
	if err != nil {
		return nil, err
	}
	masters := map[lbmap.ServiceKey]*lbmap.Frontend{}
	for i := range s.frontends {
		if f := &s.frontends[i]; f.HasMaster {
			masters[f.Key] = f
		}
	}
	views := make([]ServiceView, 0, len(masters))
	for i := range s.frontends {
		f := &s.frontends[i]
		if !f.HasMaster {
			continue
		}
		dk := f.Key
		dk.Scope = lbmap.ScopeDefault
		if f.Key.Scope == lbmap.ScopeDefault {
			v := s.serviceView(f)
			ik := f.Key
			ik.Scope = lbmap.ScopeInternal
			if internal, ok := masters[ik]; ok {
				iv := s.scopeView(internal)
				if f.Master.Flags&lbmap.FlagTwoScopes == 0 {
					iv.Problems = append(iv.Problems, "unused: the default master lacks TwoScopes")
				}
				v.Internal = &iv
			}
			views = append(views, v)
		} else if _, ok := masters[dk]; !ok || f.Key.Scope != lbmap.ScopeInternal {
			v := s.serviceView(f)
			v.Frontend += scopeSuffix(f.Key.Scope)
			v.Problems = append(v.Problems, "no socket reaches it: no default-scope master names this scope")
			views = append(views, v)
		}
	}
	return views, nil
}

func (s *snapshot) serviceView(f *lbmap.Frontend) ServiceView {
	sv := s.scopeView(f)
	return ServiceView{
		Frontend:    f.Key.AddrPort().String(),
		Protocol:    lbmap.ProtoString(f.Key.Proto),
		Service:     s.names[f.Master.ServiceId].Get(),
		ServiceID:   sv.ServiceID,
		Flags:       sv.Flags,
		Active:      sv.Active,
		Terminating: sv.Terminating,
		Backends:    sv.Backends,
		Problems:    sv.Problems,
	}
}

func (s *snapshot) scopeView(f *lbmap.Frontend) ScopeView {
	v := ScopeView{
		ServiceID:   f.Master.ServiceId,
		Flags:       lbmap.FlagsString(f.Master.Flags),
		Active:      int(f.Master.Count),
		Terminating: int(f.Master.Terminating),
		Backends:    []BackendSlot{},
		Problems:    slices.Clone(f.Problems),
	}
	// An int counter: a uint16 one would wrap at 65,535 slots and never end.
	for n := 1; n <= f.Exposed(); n++ {
		slot := uint16(n)
		id, ok := f.Slots[slot]
		if !ok {
			continue // a problem already
		}
		state := "active"
		if slot > f.Master.Count {
			state = "terminating"
		}
		addr := "?"
		if b, ok := s.backends[id]; ok {
			addr = b.AddrPort().String()
		}
		v.Backends = append(v.Backends, BackendSlot{Slot: slot, BackendID: id, Address: addr, State: state})
	}
	return v
}

// scopeSuffix marks a frontend of a scope other than the default one.
func scopeSuffix(scope lbmap.Scope) string {
	switch scope {
	case lbmap.ScopeDefault:
		return ""
	case lbmap.ScopeInternal:
		return "(internal)"
	}
	return fmt.Sprintf("(scope %d)", scope)
}

// Backends lists the backends map with the frontends that use each backend.
func Backends(m *lbmap.Maps) ([]BackendView, error) {
	return backendViews(m.Tables())
}

func backendViews(t lbmap.Tables) ([]BackendView, error) {
	s, err := read(t)
	if err != nil {
		return nil, err
	}
	usedBy := map[uint32][]string{}
	for _, f := range s.frontends {
		if !f.HasMaster {
			continue
		}
		user := fmt.Sprintf("%s/%s%s", f.Key.AddrPort(), lbmap.ProtoString(f.Key.Proto), scopeSuffix(f.Key.Scope))
		for _, id := range f.Slots {
			usedBy[id] = append(usedBy[id], user)
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

// WriteServices prints views in format f. In a table, a frontend's internal
// scope is a row of its own below it, marked "(internal)".
func WriteServices(w io.Writer, f Format, views []ServiceView) error {
	if f == JSON {
		return writeJSON(w, views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FRONTEND\tPROTO\tSERVICE\tID\tFLAGS\tACTIVE\tTERMINATING\tBACKENDS")
	for _, v := range views {
		name := v.Service
		if name == "" {
			name = "-"
		}
		writeScopeRow(tw, v.Frontend, v.Protocol, name, ScopeView{ServiceID: v.ServiceID, Flags: v.Flags, Active: v.Active,
			Terminating: v.Terminating, Backends: v.Backends, Problems: v.Problems})
		if v.Internal != nil {
			writeScopeRow(tw, v.Frontend+scopeSuffix(lbmap.ScopeInternal), v.Protocol, name, *v.Internal)
		}
	}
	return tw.Flush()
}

func writeScopeRow(w io.Writer, frontend, proto, name string, v ScopeView) {
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
	fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", frontend, proto, name, v.ServiceID, v.Flags, v.Active, v.Terminating, strings.Join(backends, " "))
	for _, p := range v.Problems {
		fmt.Fprintf(w, "\t\t\t\t\t\t\tPROBLEM: %s\n", p)
	}
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
