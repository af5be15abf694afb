package datapath

import (
	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
)

// LoadSocketPrograms loads the socket object against m, for tests.
func LoadSocketPrograms(m *lbmap.Maps, feats Features) (map[string]*ebpf.Program, error) {
	progs, err := loadPrograms(m, feats)
	if err != nil {
		return nil, err
	}
	out := map[string]*ebpf.Program{}
	for name, p := range progs {
		out[name] = p.prog
	}
	return out, nil
}

// ProgramID is the id of the loaded program name.
func (d *Datapath) ProgramID(name string) (ebpf.ProgramID, error) {
	info, err := d.progs[name].prog.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

// LoadNodePortPrograms loads the north-south object against m, for tests.
func LoadNodePortPrograms(m *lbmap.Maps) (xdp, tcEgress *ebpf.Program, err error) {
	p, err := loadNodePortPrograms(m)
	if err != nil {
		return nil, nil, err
	}
	return p.XDP, p.TCEgress, nil
}
