package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
)

// nodePortPrograms are the north-south programs: XDP on a device's ingress,
// tc on its egress.
type nodePortPrograms struct {
	XDP       *ebpf.Program
	TCEgress  *ebpf.Program
	TCIngress *ebpf.Program
}

func (p *nodePortPrograms) close() error {
	return errors.Join(p.XDP.Close(), p.TCEgress.Close(), p.TCIngress.Close())
}

// loadNodePortPrograms loads the north-south object against m, like the
// socket object: it shares every map lbmap created.
func loadNodePortPrograms(m *lbmap.Maps) (*nodePortPrograms, error) {
	spec, err := loadNodeport()
	if err != nil {
		return nil, fmt.Errorf("read the embedded north-south object: %w", err)
	}
	var objs nodeportPrograms
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replacements(spec, m)}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load the north-south programs: the verifier refused them: %+v", verr)
		}
		return nil, fmt.Errorf("load the north-south programs: %w", err)
	}
	return &nodePortPrograms{XDP: objs.NodeportXdp, TCEgress: objs.NodeportTcEgress, TCIngress: objs.NodeportTcIngress}, nil
}
