package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/lbmap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// nodeFlags are where the datapath lives: every command that touches it takes
// the same ones, with a real node's defaults.
type nodeFlags struct {
	pinDir string
	cgroup string
}

func (f *nodeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.pinDir, "bpffs", lbmap.DefaultPinDir, "pin directory on a bpffs for socklb's maps and links")
	cmd.Flags().StringVar(&f.cgroup, "cgroup", "", "cgroup v2 directory whose sockets are balanced (default: the root of the cgroup2 mount)")
}

func (f *nodeFlags) cgroupDir() (string, error) {
	if f.cgroup != "" {
		return f.cgroup, nil
	}
	return datapath.Cgroup2Root()
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "socklb",
		Short:         "Kubernetes Services without iptables: BPF at the cgroup socket hooks",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCommand(), newInspectCommand(), newCleanupCommand(), newVersionCommand(), newMonitorCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "socklb %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func newLogger(level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("parse --log-level %q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil
	// A stack trace says nothing to an operator about a bad object or a
	// full map, and at a line per retry it is most of the log: debug only.
	cfg.DisableStacktrace = lvl > zapcore.DebugLevel
	return cfg.Build()
}
