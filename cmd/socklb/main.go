// Command socklb replaces kube-proxy with BPF programs at the cgroup socket
// hooks. See `socklb --help`.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "socklb:", err)
		os.Exit(1)
	}
}
