// Package datapath loads socklb's BPF programs, pins their maps and links
// under the pin directory, attaches them to a cgroup v2 directory, and takes
// them all away again on cleanup. Together with package maps it is the only
// code that touches the kernel's BPF state.
package datapath
