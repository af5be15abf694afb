package main

import (
	"github.com/spf13/cobra"

	"github.com/socklb/socklb/pkg/inspect"
	"github.com/socklb/socklb/pkg/lbmap"
)

func newInspectCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show what the datapath holds, decoded from the pinned maps",
	}
	cmd.AddCommand(
		newInspectSubcommand("services", "Frontends with their backend slots", func(c *cobra.Command, m *lbmap.Maps, f inspect.Format) error {
			views, err := inspect.Services(m)
			if err != nil {
				return err
			}
			return inspect.WriteServices(c.OutOrStdout(), f, views)
		}),
		newInspectSubcommand("backends", "Backends with the frontends that use them", func(c *cobra.Command, m *lbmap.Maps, f inspect.Format) error {
			views, err := inspect.Backends(m)
			if err != nil {
				return err
			}
			return inspect.WriteBackends(c.OutOrStdout(), f, views)
		}),
		newInspectSubcommand("flows", "Connections from outside the node (NodePort, LoadBalancer, external IPs) with their backend and SNAT", func(c *cobra.Command, m *lbmap.Maps, f inspect.Format) error {
			views, err := inspect.Flows(m)
			if err != nil {
				return err
			}
			return inspect.WriteFlows(c.OutOrStdout(), f, views)
		}),
	)
	return cmd
}

func newInspectSubcommand(use, short string, show func(*cobra.Command, *lbmap.Maps, inspect.Format) error) *cobra.Command {
	var node nodeFlags
	var output string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := inspect.ParseFormat(output)
			if err != nil {
				return err
			}
			m, err := lbmap.OpenPinned(node.pinDir)
			if err != nil {
				return err
			}
			defer m.Close()
			return show(cmd, m, format)
		},
	}
	node.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", string(inspect.Table), "output format: table or json")
	return cmd
}
