package sockdestroy

import (
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
	objs destroyObjects
	iter *link.Iter
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

// Load loads the iterator. It fails with an error matching
// ebpf.ErrNotSupported on a kernel without bpf_sock_destroy.
func Load() (*Destroyer, error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	d := &Destroyer{}
	if err := loadDestroyObjects(&d.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load the socket-destroying iterator: the verifier refused it: %+v", verr)
		}
		return nil, fmt.Errorf("load the socket-destroying iterator: %w", err)
	}
	it, err := link.AttachIter(link.IterOptions{Program: d.objs.SockDestroyUdp})
	if err != nil {
		d.objs.Close()
		return nil, fmt.Errorf("attach the socket-destroying iterator: %w", err)
	}
	d.iter = it
	return d, nil
}

// Close releases the iterator.
func (d *Destroyer) Close() error {
	return errors.Join(d.iter.Close(), d.objs.Close())
}

// Destroy destroys the connected UDP sockets keys name, in every network
// namespace, and returns the cookies of those it destroyed. A namespace
// that cannot be entered (gone meanwhile) is skipped and reported in err
// beside the sockets destroyed elsewhere.
func (d *Destroyer) Destroy(keys []lbmap.SockKey) ([]uint64, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	list := d.Namespaces
	if list == nil {
		list = Namespaces
	}
	namespaces, err := list()
	if err != nil {
		return nil, err
	}
	var destroyed []uint64
	var errs []error
	max := int(d.objs.LbSockDestroy.MaxEntries())
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
	if errs := lbmap.Update(d.objs.LbSockDestroy, keys, ones); len(errs) > 0 {
		lbmap.Delete(d.objs.LbSockDestroy, keys)
		return nil, fmt.Errorf("write the sockets to destroy: %w", errs[0])
	}
	defer lbmap.Delete(d.objs.LbSockDestroy, keys)
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

// walk runs the iterator over the calling thread's network namespace: the
// kernel binds a socket iterator to the namespace of whoever opens it.
func (d *Destroyer) walk() ([]uint64, error) {
	r, err := d.iter.Open()
	if err != nil {
		return nil, fmt.Errorf("open the iterator: %w", err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read the iterator: %w", err)
	}
	cookies := make([]uint64, 0, len(out)/8)
	for i := 0; i+8 <= len(out); i += 8 {
		cookies = append(cookies, binary.NativeEndian.Uint64(out[i:]))
	}
	return cookies, nil
}
