package sockdestroy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/socklb/socklb/pkg/lbmap"
)

// MinKernel is the Linux version bpf_sock_destroy arrived in.
const MinKernel = "6.5"

// Destroyer runs the socket-destroying iterator.
type Destroyer struct {
	objs destroyObjs
	iter *link.Iter
	list *link.Iter
	// Namespaces lists the network namespaces to walk; nil: every one on
	// the machine (Namespaces).
	Namespaces func() ([]string, error)
}

// Supported reports whether the kernel has bpf_sock_destroy, as an error
// matching ebpf.ErrNotSupported when it does not.
func Supported() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("read the kernel's BTF: %w", err)
	}
	var fn *btf.Func
	if err := spec.TypeByName("bpf_sock_destroy", &fn); err != nil {
		if errors.Is(err, btf.ErrNotFound) {
			return fmt.Errorf("the kernel lacks bpf_sock_destroy (Linux %s): %w", MinKernel, ebpf.ErrNotSupported)
		}
		return fmt.Errorf("look up bpf_sock_destroy in the kernel's BTF: %w", err)
	}
	return nil
}

// destroyObjs are the object's programs and its own map; the others are
// the agent's (lbmap), handed in.
type destroyObjs struct {
	Destroy *ebpf.Program `ebpf:"sock_destroy_udp"`
	List    *ebpf.Program `ebpf:"sock_list_udp"`
	Targets *ebpf.Map     `ebpf:"lb_sock_destroy"`
}

func (o *destroyObjs) Close() error {
	return errors.Join(o.Destroy.Close(), o.List.Close(), o.Targets.Close())
}

// Load loads the iterators against the agent's maps. It fails with an
// error matching ebpf.ErrNotSupported on a kernel without bpf_sock_destroy.
func Load(maps *lbmap.Maps) (*Destroyer, error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	spec, err := loadDestroy()
	if err != nil {
		return nil, fmt.Errorf("read the embedded socket-destroying object: %w", err)
	}
	d := &Destroyer{}
	if err := spec.LoadAndAssign(&d.objs, &ebpf.CollectionOptions{MapReplacements: maps.ReplacementsFor(spec)}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load the socket-destroying iterator: the verifier refused it: %+v", verr)
		}
		return nil, fmt.Errorf("load the socket-destroying iterator: %w", err)
	}
	if d.iter, err = link.AttachIter(link.IterOptions{Program: d.objs.Destroy}); err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("attach the socket-destroying iterator: %w", err)
	}
	if d.list, err = link.AttachIter(link.IterOptions{Program: d.objs.List}); err != nil {
		d.iter.Close()
		d.objs.Close()
		return nil, fmt.Errorf("attach the socket-listing iterator: %w", err)
	}
	return d, nil
}

// Close releases the iterators.
func (d *Destroyer) Close() error {
	return errors.Join(d.iter.Close(), d.list.Close(), d.objs.Close())
}

// Listed is a connected UDP socket whose reverse-NAT entry is in
// socket-local storage: its key as the LRU would hold it, and the entry.
type Listed struct {
	Key   lbmap.SockKey
	Value lbmap.SockRevNat
}

// List returns the connected UDP sockets of every network namespace whose
// reverse-NAT entry is in socket-local storage, which only a BPF program
// can read. A namespace that cannot be entered is skipped and reported.
func (d *Destroyer) List() ([]Listed, error) {
	namespaces, err := d.namespaces()
	if err != nil {
		return nil, err
	}
	var out []Listed
	var errs []error
	for _, ns := range namespaces {
		err := inNetns(ns, func() error {
			raw, err := readIter(d.list)
			if err != nil {
				return err
			}
			got, err := decodeListed(raw)
			out = append(out, got...)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("list sockets in %s: %w", ns, err))
		}
	}
	return out, errors.Join(errs...)
}

// decodeListed reads sock_list_udp's records: struct lb_sock_key, then the
// service id and 4 bytes of padding.
func decodeListed(raw []byte) ([]Listed, error) {
	const size = 40
	out := make([]Listed, 0, len(raw)/size)
	r := bytes.NewReader(raw)
	for r.Len() >= size {
		var rec struct {
			Key       lbmap.SockKey
			ServiceID uint32
			Pad       uint32
		}
		if err := binary.Read(r, binary.NativeEndian, &rec); err != nil {
			return out, fmt.Errorf("decode a listed socket: %w", err)
		}
		out = append(out, Listed{Key: rec.Key, Value: lbmap.SockRevNat{ServiceId: rec.ServiceID}})
	}
	return out, nil
}

func (d *Destroyer) namespaces() ([]string, error) {
	if d.Namespaces != nil {
		return d.Namespaces()
	}
	return Namespaces()
}

// readIter runs an iterator over the calling thread's network namespace:
// the kernel binds a socket iterator to the namespace of whoever opens it.
func readIter(it *link.Iter) ([]byte, error) {
	r, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("open the iterator: %w", err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read the iterator: %w", err)
	}
	return out, nil
}

// Destroy destroys the connected UDP sockets keys name, in every network
// namespace, and returns the cookies of those it destroyed. A namespace
// that cannot be entered (gone meanwhile) is skipped and reported in err
// beside the sockets destroyed elsewhere.
func (d *Destroyer) Destroy(keys []lbmap.SockKey) ([]uint64, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	namespaces, err := d.namespaces()
	if err != nil {
		return nil, err
	}
	var destroyed []uint64
	var errs []error
	max := int(d.objs.Targets.MaxEntries())
	for start := 0; start < len(keys); start += max {
		batch := keys[start:min(start+max, len(keys))]
		got, err := d.destroyBatch(batch, namespaces)
		destroyed = append(destroyed, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return destroyed, errors.Join(errs...)
}

// destroyBatch fills the map with keys, walks every namespace and empties
// the map again.
func (d *Destroyer) destroyBatch(keys []lbmap.SockKey, namespaces []string) ([]uint64, error) {
	ones := make([]uint8, len(keys))
	for i := range ones {
		ones[i] = 1
	}
	if errs := lbmap.Update(d.objs.Targets, keys, ones); len(errs) > 0 {
		lbmap.Delete(d.objs.Targets, keys)
		return nil, fmt.Errorf("write the sockets to destroy: %w", errs[0])
	}
	defer lbmap.Delete(d.objs.Targets, keys)
	var destroyed []uint64
	var errs []error
	for _, ns := range namespaces {
		var got []uint64
		err := inNetns(ns, func() error {
			var err error
			got, err = d.walk()
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("destroy sockets in %s: %w", ns, err))
			continue
		}
		destroyed = append(destroyed, got...)
	}
	return destroyed, errors.Join(errs...)
}

// walk runs the destroying iterator over the calling thread's namespace.
func (d *Destroyer) walk() ([]uint64, error) {
	out, err := readIter(d.iter)
	if err != nil {
		return nil, err
	}
	cookies := make([]uint64, 0, len(out)/8)
	for i := 0; i+8 <= len(out); i += 8 {
		cookies = append(cookies, binary.NativeEndian.Uint64(out[i:]))
	}
	return cookies, nil
}
