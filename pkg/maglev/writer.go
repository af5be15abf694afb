package maglev

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/syncer"
)

// Writer keeps the Maglev tables of the maps in step with the desired
// state, after each sync: the syncer writes the slots, the writer the table
// naming them. Until a new table is swapped in, the XDP program ignores an
// entry naming a slot outside the set in use and picks at random, so a
// new flow always reaches one of the frontend's own backends.
type Writer struct {
	maps   *lbmap.Maps
	tables lbmap.Tables
	size   uint32
	log    *zap.Logger
	// written is, per service id with a table, the backends it was
	// computed from; frontends the service id of each frontend written.
	written   map[uint32][]string
	frontends map[desired.Frontend]uint32
	started   bool
}

// NewWriter writes tables of size entries (see ValidSize) into maps.
func NewWriter(maps *lbmap.Maps, size uint32, log *zap.Logger) *Writer {
	return &Writer{maps: maps, tables: maps.Tables(), size: size, log: log,
		written: map[uint32][]string{}, frontends: map[desired.Frontend]uint32{}}
}

// AfterSync rewrites the tables of the frontends res changed and of those
// whose algorithm changed; the first call rewrites every table and drops
// those no frontend wants (left by an agent before this one).
func (w *Writer) AfterSync(state *desired.State, res syncer.Result) {
	var errs []error
	for _, fe := range w.candidates(state, res) {
		if err := w.sync(fe, state.Frontends[fe]); err != nil {
			errs = append(errs, fmt.Errorf("frontend %s: %w", fe, err))
		}
	}
	if !w.started {
		w.started = true
		errs = append(errs, w.dropStray())
	}
	if err := errors.Join(errs...); err != nil {
		w.log.Error("write maglev tables", zap.Error(err))
	}
}

// candidates are the frontends whose table may have to change.
func (w *Writer) candidates(state *desired.State, res syncer.Result) []desired.Frontend {
	set := map[desired.Frontend]bool{}
	for _, fc := range res.Frontends {
		// A frontend without a table that needs none is left alone: a
		// first sync of 30,000 ClusterIPs read 30,000 master entries back
		// from the kernel for nothing.
		if _, had := w.frontends[fc.Frontend]; had || usesMaglev(state.Frontends[fc.Frontend]) {
			set[fc.Frontend] = true
		}
	}
	for fe, e := range state.Frontends {
		if _, had := w.frontends[fe]; usesMaglev(e) != had || (!w.started && usesMaglev(e)) {
			set[fe] = true
		}
	}
	for fe := range w.frontends {
		if state.Frontends[fe] == nil {
			set[fe] = true
		}
	}
	out := make([]desired.Frontend, 0, len(set))
	for fe := range set {
		out = append(out, fe)
	}
	slices.SortFunc(out, desired.Frontend.Compare)
	return out
}

// usesMaglev: only the north-south frontends reach XDP.
func usesMaglev(e *desired.FrontendEntry) bool {
	return e != nil && e.Maglev && e.Kind != desired.ClusterIP
}

// sync writes or deletes the table of one frontend.
func (w *Writer) sync(fe desired.Frontend, e *desired.FrontendEntry) error {
	master, err := w.tables.Services.Lookup(lbmap.NewServiceKey(fe.Addr, fe.Port, uint8(fe.Proto), lbmap.ScopeDefault, 0))
	found := err == nil
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read the master entry: %w", err)
	}
	if old, had := w.frontends[fe]; had && (!found || old != master.ServiceId || !usesMaglev(e)) {
		if err := w.drop(old); err != nil {
			return err
		}
		delete(w.frontends, fe)
	}
	if !found || !usesMaglev(e) {
		return nil
	}
	w.frontends[fe] = master.ServiceId
	slots, names, err := w.backendsInUse(fe, master)
	if err != nil {
		return err
	}
	if slices.Equal(w.written[master.ServiceId], names) && names != nil {
		return nil
	}
	if len(names) == 0 {
		return w.drop(master.ServiceId)
	}
	return w.put(master.ServiceId, slots, names)
}

// backendsInUse are the slots the datapath picks from now (the active
// ones, else the terminating ones) and their backends' addresses, sorted
// by address: the table must not depend on the slot order, which is this
// node's.
func (w *Writer) backendsInUse(fe desired.Frontend, master lbmap.ServiceValue) ([]uint16, []string, error) {
	first, n := uint16(1), master.Count
	if n == 0 {
		first, n = master.Count+1, master.Terminating
	}
	type named struct {
		slot uint16
		name string
	}
	var in []named
	for s := first; s < first+n; s++ {
		entry, err := w.tables.Services.Lookup(lbmap.NewServiceKey(fe.Addr, fe.Port, uint8(fe.Proto), lbmap.ScopeDefault, s))
		if err != nil {
			return nil, nil, fmt.Errorf("read slot %d: %w", s, err)
		}
		b, err := w.tables.Backends.Lookup(entry.BackendId)
		if err != nil {
			return nil, nil, fmt.Errorf("read backend %d: %w", entry.BackendId, err)
		}
		in = append(in, named{s, backendName(b.AddrPort())})
	}
	slices.SortFunc(in, func(a, b named) int { return strings.Compare(a.name, b.name) })
	slots := make([]uint16, len(in))
	names := make([]string, len(in))
	for i, x := range in {
		slots[i], names[i] = x.slot, x.name
	}
	return slots, names, nil
}

func backendName(ap netip.AddrPort) string { return ap.String() }

// put computes the table and swaps it in as a new inner map.
func (w *Writer) put(serviceID uint32, slots []uint16, names []string) error {
	table := Table(names, uint64(w.size))
	// The kernel takes an inner map whose flags equal the template's; with
	// BPF_F_INNER_MAP among them, its size may differ.
	inner, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lb_maglev_table", Type: ebpf.Array, KeySize: 4, ValueSize: 4,
		MaxEntries: w.size + 1, Flags: unix.BPF_F_INNER_MAP})
	if err != nil {
		return fmt.Errorf("create a table of %d entries: %w", w.size, err)
	}
	defer inner.Close()
	keys := make([]uint32, w.size+1)
	values := make([]uint32, w.size+1)
	values[0] = w.size
	for i, b := range table {
		keys[i+1], values[i+1] = uint32(i+1), uint32(slots[b])
	}
	if errs := lbmap.Update(inner, keys, values); len(errs) > 0 {
		return fmt.Errorf("fill the table: %w", errs[0])
	}
	if err := w.maps.Maglev.Put(serviceID, inner); err != nil {
		return fmt.Errorf("swap in the table of service id %d: %w", serviceID, err)
	}
	w.written[serviceID] = names
	w.log.Debug("maglev table written", zap.Uint32(logfield.ServiceID, serviceID), zap.Strings(logfield.Backends, names))
	return nil
}

func (w *Writer) drop(serviceID uint32) error {
	delete(w.written, serviceID)
	if err := w.maps.Maglev.Delete(serviceID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete the table of service id %d: %w", serviceID, err)
	}
	return nil
}

// dropStray deletes the tables of service ids no frontend written uses.
func (w *Writer) dropStray() error {
	want := map[uint32]bool{}
	for _, id := range w.frontends {
		want[id] = true
	}
	var id uint32
	var inner ebpf.MapID
	var stray []uint32
	it := w.maps.Maglev.Iterate()
	for it.Next(&id, &inner) {
		if !want[id] {
			stray = append(stray, id)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list the maglev tables: %w", err)
	}
	var errs []error
	for _, id := range stray {
		errs = append(errs, w.drop(id))
	}
	return errors.Join(errs...)
}
