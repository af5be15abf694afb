package main

import (
	"github.com/spf13/cobra"

	"github.com/socklb/socklb/pkg/datapath"
)

func newCleanupCommand() *cobra.Command {
	var node nodeFlags
	var logLevel string
	var also []string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Detach socklb's programs and remove its pinned maps and links",
		Long: "Detach socklb's programs and remove its pinned maps and links. Sockets connected\n" +
			"through a VIP keep working; new connects to a VIP are no longer translated.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			defer log.Sync()
			// The links remember their cgroup; --cgroup is accepted so that
			// scripts can pass the agent's flags unchanged.
			return datapath.Cleanup(node.pinDir, also, log)
		},
	}
	node.register(cmd)
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.Flags().StringSliceVar(&also, "also", nil, "names in the pin directory (or links/NAME) socklb did not make, to remove too; without it such a directory is refused")
	return cmd
}
