package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/maglev"
)

// maglevFlags choose how outside clients' new flows pick a backend.
type maglevFlags struct {
	algorithm string
	tableSize uint32
}

func (f *maglevFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.algorithm, "lb-algorithm", desired.Random.String(), "how XDP picks a backend for a new flow from outside the node, for Services without the "+desired.LBAlgorithmAnnotation+" annotation: random, or maglev (consistent hashing: every node picks the same backend for a flow)")
	cmd.Flags().Uint32Var(&f.tableSize, "maglev-table-size", maglev.DefaultSize, "entries of each Maglev table, a prime; about 100 times a frontend's backends keeps their shares within 1%")
}

// apply puts the default algorithm into opts and checks the table size.
func (f *maglevFlags) apply(opts *desired.Options) error {
	a, err := desired.ParseLBAlgorithm(f.algorithm)
	if err != nil {
		return fmt.Errorf("read --lb-algorithm: %w", err)
	}
	opts.LBAlgorithm = a
	if err := maglev.ValidSize(uint64(f.tableSize)); err != nil {
		return fmt.Errorf("read --maglev-table-size: %w", err)
	}
	return nil
}
