package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
)

// RepairPins makes every map's pin refer again to the map the programs use,
// and returns the names of the pins it repaired, sorted.
//
// A pin removed by hand (rm /sys/fs/bpf/socklb/lb_services) or replaced by
// another map changes nothing while the agent runs: the programs and the
// agent hold the map itself. It matters at the next start, which would make
// an empty map and lose every id and every live flow. Pinning the map in use
// again is the whole repair: the programs keep their map, the syncer's
// mirror stays exact and no client sees a gap; recreating the map instead
// would drop the connection state of lb_nat and lb_sock_backend for nothing.
func (d *Datapath) RepairPins() ([]string, error) {
	var repaired []string
	var errs []error
	for name, m := range d.Maps.ByName() {
		path := filepath.Join(d.pinDir, name)
		ok, err := pinRefersTo(path, d.mapIDs[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			continue
		}
		if err := repin(m, path); err != nil {
			errs = append(errs, err)
			continue
		}
		repaired = append(repaired, name)
		d.log.Warn("map pin repaired: pinned again the map the programs use", zap.String(logfield.Pin, path), zap.Uint32(logfield.MapID, uint32(d.mapIDs[name])))
	}
	slices.Sort(repaired)
	return repaired, errors.Join(errs...)
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

// repin removes whatever is at path and pins m there. The pin directory is
// socklb's (the agent holds its lock), so what sits at a map's name is a
// stale or foreign object in the way.
func repin(m *ebpf.Map, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("repair pin %s: remove what is there: %w", path, err)
	}
	// m remembers the path it was pinned at and would take pinning there
	// again for a no-op: forget it first (the file is gone already).
	if err := m.Unpin(); err != nil {
		return fmt.Errorf("repair pin %s: %w", path, err)
	}
	if err := m.Pin(path); err != nil {
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
