package desired

import "fmt"

// LBAlgorithm is how the north-south datapath (XDP) picks a backend for a
// new flow from outside the node. The socket hooks always pick at random:
// a socket's choice is made once, on its own node.
type LBAlgorithm uint8

const (
	// Random: each new flow picks a backend at random.
	Random LBAlgorithm = iota
	// Maglev: consistent hashing of the flow's tuple (pkg/maglev), so every
	// node picks the same backend for a flow and a backend change moves
	// about 1/N of the flows.
	Maglev
)

// LBAlgorithmAnnotation chooses a Service's algorithm, "random" or
// "maglev"; without it the agent's --lb-algorithm applies.
const LBAlgorithmAnnotation = "socklb.io/lb-algorithm"

func (a LBAlgorithm) String() string {
	switch a {
	case Random:
		return "random"
	case Maglev:
		return "maglev"
	}
	return fmt.Sprintf("LBAlgorithm(%d)", uint8(a))
}

// ParseLBAlgorithm reads "random" or "maglev".
func ParseLBAlgorithm(s string) (LBAlgorithm, error) {
	switch s {
	case "random":
		return Random, nil
	case "maglev":
		return Maglev, nil
	}
	return Random, fmt.Errorf("load-balancing algorithm %q: want random or maglev", s)
}

// lbAlgorithm is svc's algorithm: its annotation's, else the default. A
// value it cannot read is reported, and the default used.
func (b *serviceBuild) lbAlgorithm(svc ServiceView, opts Options) LBAlgorithm {
	if svc.LBAlgorithm == "" {
		return opts.LBAlgorithm
	}
	a, err := ParseLBAlgorithm(svc.LBAlgorithm)
	if err != nil {
		b.serviceError(fmt.Errorf("annotation %s: %w", LBAlgorithmAnnotation, err))
		return opts.LBAlgorithm
	}
	return a
}
