package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/healthcheck"
	"github.com/socklb/socklb/pkg/logfield"
)

// northSouthFlags configure traffic from outside the node: NodePort,
// LoadBalancer and external IPs through XDP on the node's devices.
type northSouthFlags struct {
	devices           []string
	xdpMode           string
	nodePortAddresses []string
	externalIPAllow   []string
	snatPorts         string
}

func (f *northSouthFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.devices, "devices", nil, "devices outside traffic arrives on, for NodePort, LoadBalancer and external IPs (default: the devices that carry the node's addresses)")
	cmd.Flags().StringVar(&f.xdpMode, "xdp-mode", string(datapath.XDPNative), "XDP mode on --devices: native (generic where the driver refuses it) or generic")
	cmd.Flags().StringSliceVar(&f.nodePortAddresses, "nodeport-addresses", nil, "CIDRs of the node addresses NodePorts answer on, like kube-proxy's (default: every node address)")
	cmd.Flags().StringSliceVar(&f.externalIPAllow, "external-ip-allow", nil, "CIDRs where spec.externalIPs may be; any other externalIP is refused (default: none, see CVE-2020-8554)")
	cmd.Flags().StringVar(&f.snatPorts, "snat-ports", fmt.Sprintf("%d-%d", desired.DefaultSNATPorts[0], desired.DefaultSNATPorts[1]), "source ports of flows SNATed to backends on other nodes, MIN-MAX")
}

// options turns the flags into the builder's options.
func (f *northSouthFlags) options() (desired.Options, error) {
	var opts desired.Options
	var err error
	if opts.NodePortAddresses, err = parsePrefixes("--nodeport-addresses", f.nodePortAddresses); err != nil {
		return opts, err
	}
	if opts.ExternalIPAllow, err = parsePrefixes("--external-ip-allow", f.externalIPAllow); err != nil {
		return opts, err
	}
	lo, hi, ok := strings.Cut(f.snatPorts, "-")
	min, err1 := strconv.ParseUint(lo, 10, 16)
	max, err2 := strconv.ParseUint(hi, 10, 16)
	if !ok || err1 != nil || err2 != nil || min == 0 || max < min {
		return opts, fmt.Errorf("read --snat-ports %q: want MIN-MAX, two ports with MIN <= MAX", f.snatPorts)
	}
	opts.SNATPorts = [2]uint16{uint16(min), uint16(max)}
	if _, err := datapath.ParseXDPMode(f.xdpMode); err != nil {
		return opts, fmt.Errorf("read --xdp-mode: %w", err)
	}
	return opts, opts.Validate()
}

func parsePrefixes(flag string, values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range values {
		p, err := netip.ParsePrefix(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", flag, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// deviceFollower keeps the north-south programs on the right devices: the
// ones --devices names, or else those carrying the node's addresses, which
// in a cluster are known once the Node is read and may change with it.
type deviceFollower struct {
	dp       *datapath.Datapath
	explicit []string
	mode     datapath.XDPMode
	log      *zap.Logger

	mu      sync.Mutex
	current []string
	done    bool
}

func (d *deviceFollower) onNode(node desired.NodeInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	devices := d.explicit
	if devices == nil {
		var addrs []netip.Addr
		for _, a := range node.Addresses {
			addrs = append(addrs, a.Addr)
		}
		var err error
		if devices, err = datapath.DevicesWithAddresses(addrs); err != nil {
			d.log.Error("find the devices of the node's addresses; north-south traffic stays as it was", zap.Error(err))
			return
		}
	}
	if d.done && slices.Equal(devices, d.current) {
		return
	}
	if err := d.dp.AttachDevices(devices, d.mode); err != nil {
		d.log.Error("attach the north-south programs", zap.Strings(logfield.Devices, devices), zap.Error(err))
		return
	}
	d.current, d.done = devices, true
	if len(devices) == 0 {
		d.log.Info("no device carries the node's addresses: no NodePort, LoadBalancer or external IP from outside (give --devices)")
		return
	}
	d.log.Info("north-south datapath on devices", zap.Strings(logfield.Devices, devices), zap.String(logfield.XDPMode, string(d.mode)))
}

// healthChecksOf is what the health-check server serves for state.
func healthChecksOf(state *desired.State) map[healthcheck.ServiceRef]healthcheck.Service {
	out := make(map[healthcheck.ServiceRef]healthcheck.Service, len(state.HealthChecks))
	for ref, hc := range state.HealthChecks {
		out[healthcheck.ServiceRef{Namespace: ref.Namespace, Name: ref.Name}] = healthcheck.Service{Port: hc.Port, LocalEndpoints: hc.LocalEndpoints}
	}
	return out
}

// standaloneAddresses are the node's addresses in standalone mode when
// --node-ip gives none: those on --devices.
func standaloneAddresses(node desired.NodeInfo, devices []string) (desired.NodeInfo, error) {
	if len(node.Addresses) > 0 || len(devices) == 0 {
		return node, nil
	}
	addrs, err := datapath.DeviceAddresses(devices)
	if err != nil {
		return node, fmt.Errorf("read the node's addresses from --devices: %w", err)
	}
	for _, a := range addrs {
		node.Addresses = append(node.Addresses, desired.NodeAddress{Type: "InternalIP", Addr: a})
	}
	return node, nil
}
