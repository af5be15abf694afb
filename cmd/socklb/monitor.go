package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/socklb/socklb/pkg/monitor"
)

func newMonitorCommand() *cobra.Command {
	var node nodeFlags
	var output, service string
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Stream the socket hooks' load-balancing decisions: process, frontend, backend, verdict",
		Long: "Stream the load-balancing decisions of the socket hooks as they happen: time, hook, pid and command, " +
			"socket and network namespace cookies, Service, frontend -> backend, and the verdict (translated, " +
			"refused-no-endpoints, refused, affinity-hit). The hooks write events only while a monitor runs; " +
			"events lost because the reader was slow are counted and reported. One monitor at a time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("read --output %q: want text or json", output)
			}
			return runMonitor(cmd, node.pinDir, output == "json", service)
		},
	}
	node.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text (one line per decision) or json (one object per line)")
	cmd.Flags().StringVar(&service, "service", "", "show only this Service's decisions, NAMESPACE/NAME")
	return cmd
}

func runMonitor(cmd *cobra.Command, pinDir string, asJSON bool, service string) error {
	m, err := monitor.Open(pinDir)
	if err != nil {
		return err
	}
	defer m.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			m.Interrupt()
		case <-done:
		}
	}()
	defer close(done)
	fmt.Fprintln(cmd.ErrOrStderr(), "watching load-balancing decisions; interrupt to stop")
	err = streamEvents(cmd.OutOrStdout(), cmd.ErrOrStderr(), m, asJSON, service)
	if drops, derr := m.Drops(); derr == nil && drops > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%d events lost: the reader was too slow\n", drops)
	}
	return err
}

// streamEvents prints events until interrupted, and says when the count
// of lost events grows.
func streamEvents(out, errOut io.Writer, m *monitor.Monitor, asJSON bool, service string) error {
	enc := json.NewEncoder(out)
	var lost uint64
	lastCheck := time.Now()
	for {
		e, err := m.Next()
		if errors.Is(err, monitor.ErrStopped) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the decisions: %w", err)
		}
		if time.Since(lastCheck) > time.Second {
			lastCheck = time.Now()
			if n, err := m.Drops(); err == nil && n > lost {
				fmt.Fprintf(errOut, "%d events lost so far: the reader is too slow\n", n)
				lost = n
			}
		}
		if !monitor.MatchService(e.Service, service) {
			continue
		}
		if asJSON {
			err = enc.Encode(e)
		} else {
			_, err = fmt.Fprintln(out, e)
		}
		if err != nil {
			return fmt.Errorf("write a decision: %w", err)
		}
	}
}
