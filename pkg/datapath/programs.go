package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/socklb/socklb/pkg/lbmap"
)

// program is one loaded program and how it attaches.
type program struct {
	prog       *ebpf.Program
	attachType ebpf.AttachType
}

// programs are the loaded programs by name (the C function's).
type programs map[string]program

func (p programs) close() error {
	var errs []error
	for _, pr := range p {
		errs = append(errs, pr.prog.Close())
	}
	return errors.Join(errs...)
}

// loadPrograms loads the socket hooks against m: the object's own map
// declarations are replaced by m, so every object shares the maps lbmap
// created from the layouts.
func loadPrograms(m *lbmap.Maps, feats Features) (programs, error) {
	spec, err := loadSock()
	if err != nil {
		return nil, fmt.Errorf("read the embedded socket object: %w", err)
	}
	var haveSetRetval uint32
	if feats.SetRetval {
		haveSetRetval = 1
	}
	if err := spec.Variables[sockVarCfgHaveSetRetval].Set(haveSetRetval); err != nil {
		return nil, fmt.Errorf("configure the socket object: %w", err)
	}
	if err := spec.Variables[sockVarCfgMonitorTask].Set(boolWord(feats.CurrentTask)); err != nil {
		return nil, fmt.Errorf("configure the socket object: %w", err)
	}
	if err := spec.Variables[sockVarCfgHaveSkStorage].Set(boolWord(feats.SockStorage)); err != nil {
		return nil, fmt.Errorf("configure the socket object: %w", err)
	}
	var objs sockPrograms
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: replacements(spec, m)}); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load BPF programs: the verifier refused them: %+v", verr)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	progs := programs{}
	for name, prog := range map[string]*ebpf.Program{
		sockProgConnect4:     objs.Connect4,
		sockProgConnect6:     objs.Connect6,
		sockProgSendmsg4:     objs.Sendmsg4,
		sockProgSendmsg6:     objs.Sendmsg6,
		sockProgRecvmsg4:     objs.Recvmsg4,
		sockProgRecvmsg6:     objs.Recvmsg6,
		sockProgGetpeername4: objs.Getpeername4,
		sockProgGetpeername6: objs.Getpeername6,
	} {
		progs[name] = program{prog: prog, attachType: spec.Programs[name].AttachType}
	}
	np, err := loadNodePortPrograms(m)
	if err != nil {
		progs.close()
		return nil, err
	}
	progs[nodeportProgNodeportXdp] = program{prog: np.XDP}
	progs[nodeportProgNodeportTcEgress] = program{prog: np.TCEgress, attachType: ebpf.AttachTCXEgress}
	progs[nodeportProgNodeportTcIngress] = program{prog: np.TCIngress, attachType: ebpf.AttachTCXIngress}
	return progs, nil
}

func boolWord(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// replacements are the maps of m that spec declares, with spec's sizes
// made theirs: a map created with another size than compiled in
// (--map-size-services) is what the programs must use.
func replacements(spec *ebpf.CollectionSpec, m *lbmap.Maps) map[string]*ebpf.Map {
	r := m.ReplacementsFor(spec)
	for name, em := range r {
		spec.Maps[name].MaxEntries = em.MaxEntries()
	}
	return r
}
