package lbmap

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// Maps holds the load-balancing maps, whether just loaded with the programs or
// opened from their pins by a reader such as socklb inspect.
type Maps struct {
	Services     *ebpf.Map
	Backends     *ebpf.Map
	RevNat       *ebpf.Map
	ServiceNames *ebpf.Map
	SockRevNat   *ebpf.Map
	SockBackend  *ebpf.Map
}

// FromObjects takes the maps of a loaded collection.
func FromObjects(m *SockLBMaps) *Maps {
	return &Maps{
		Services:     m.LbServices,
		Backends:     m.LbBackends,
		RevNat:       m.LbRevNat,
		ServiceNames: m.LbServiceNames,
		SockRevNat:   m.LbSockRevNat,
		SockBackend:  m.LbSockBackend,
	}
}

// OpenPinned opens the maps pinned under pinDir read-only: readers such as
// socklb inspect can never change what the datapath uses.
func OpenPinned(pinDir string) (*Maps, error) {
	m := &Maps{}
	for _, pin := range []struct {
		name string
		dst  **ebpf.Map
	}{
		{ServicesMap, &m.Services},
		{BackendsMap, &m.Backends},
		{RevNatMap, &m.RevNat},
		{ServiceNamesMap, &m.ServiceNames},
		{SockRevNatMap, &m.SockRevNat},
		{SockBackendMap, &m.SockBackend},
	} {
		path := filepath.Join(pinDir, pin.name)
		em, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		*pin.dst = em
	}
	return m, nil
}

// Close releases the file descriptors; pinned maps stay in the kernel.
func (m *Maps) Close() error {
	var errs []error
	for _, em := range []*ebpf.Map{m.Services, m.Backends, m.RevNat, m.ServiceNames, m.SockRevNat, m.SockBackend} {
		if em != nil {
			errs = append(errs, em.Close())
		}
	}
	return errors.Join(errs...)
}

// EntryError is the failure of one entry of a batch write.
type EntryError struct {
	Index int
	Err   error
}

func (e EntryError) Error() string { return fmt.Sprintf("entry %d: %v", e.Index, e.Err) }
