package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
)

// RepairPins makes every pin refer again to what the datapath uses: each
// map's pin to the map the programs use, each link's pin to the link
// attaching the program. It returns the pins it repaired, sorted, by their
// names under the pin directory ("lb_services", "links/cgroup-connect4").
//
// A pin removed by hand (rm /sys/fs/bpf/socklb/lb_services) or replaced by
// another object changes nothing while the agent runs: the programs and the
// agent hold the map itself. It matters at the next start, which would make
// an empty map and lose every id and every live flow; and a link whose pin
// is gone detaches when the agent exits. Pinning what is in use again is
// the whole repair: the programs keep their map, the syncer's mirror stays
// exact and no client sees a gap; recreating the map instead would drop the
// connection state of lb_nat and lb_sock_backend for nothing.
func (d *Datapath) RepairPins() ([]string, error) {
	var repaired []string
	var errs []error
	note := func(path string, ok bool, err error, repin func() error) {
		if err == nil && !ok {
			err = repin()
			if err == nil {
				rel, _ := filepath.Rel(d.pinDir, path)
				repaired = append(repaired, rel)
				d.log.Warn("pin repaired: pinned again what the datapath uses", zap.String(logfield.Pin, path))
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for name, m := range d.Maps.ByName() {
		path := filepath.Join(d.pinDir, name)
		ok, err := pinRefersTo(path, d.mapIDs[name])
		note(path, ok, err, func() error { return repin(m, path, false) })
	}
	for _, l := range d.links {
		ok, err := linkPinRefersTo(l)
		note(l.pin, ok, err, func() error { return repin(l.Link, l.pin, true) })
	}
	slices.Sort(repaired)
	return repaired, errors.Join(errs...)
}

// linkPinRefersTo says whether the link pinned at l.pin is l.
func linkPinRefersTo(l pinnedLink) (bool, error) {
	held, err := l.Info()
	if err != nil {
		return false, fmt.Errorf("check pin %s: %w", l.pin, err)
	}
	pinned, err := link.LoadPinnedLink(l.pin, nil)
	if err != nil {
		return false, nil // nothing there, or no link
	}
	defer pinned.Close()
	info, err := pinned.Info()
	if err != nil {
		return false, fmt.Errorf("check pin %s: %w", l.pin, err)
	}
	return info.ID == held.ID, nil
}

// pinRefersTo says whether the map pinned at path is the map with id want;
// false when nothing is pinned there.
func pinRefersTo(path string, want ebpf.MapID) (bool, error) {
	pinned, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		// Something that is not a map (a file or a link) sits there.
		return false, nil
	}
	defer pinned.Close()
	id, err := mapID(pinned)
	if err != nil {
		return false, fmt.Errorf("check pin %s: %w", path, err)
	}
	return id == want, nil
}

// pinnable is a map or a link.
type pinnable interface {
	Pin(string) error
	Unpin() error
}

// repin removes whatever is at path and pins obj there. The pin directory
// is socklb's (the agent holds its lock), so what sits at one of its names
// is a stale or foreign object in the way.
// makeDir makes path's directory first: links/ may have been removed with
// its pins. The pin directory itself is never made again here: the agent's
// lock is on the one it opened.
func repin(obj pinnable, path string, makeDir bool) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("repair pin %s: remove what is there: %w", path, err)
	}
	// obj remembers the path it was pinned at and would take pinning there
	// again for a no-op: forget it first (the file is gone already).
	if err := obj.Unpin(); err != nil {
		return fmt.Errorf("repair pin %s: %w", path, err)
	}
	if makeDir {
		if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("repair pin %s: %w", path, err)
		}
	}
	if err := obj.Pin(path); err != nil {
		return fmt.Errorf("repair pin %s: %w", path, err)
	}
	return nil
}

// mapIDs is the kernel id of each of m's maps, by name.
func mapIDs(m *lbmap.Maps) (map[string]ebpf.MapID, error) {
	ids := map[string]ebpf.MapID{}
	for name, em := range m.ByName() {
		id, err := mapID(em)
		if err != nil {
			return nil, fmt.Errorf("read the id of map %s: %w", name, err)
		}
		ids[name] = id
	}
	return ids, nil
}

func mapID(m *ebpf.Map) (ebpf.MapID, error) {
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("the kernel gives no map ids")
	}
	return id, nil
}
