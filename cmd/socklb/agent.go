package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/socklb/socklb/pkg/agent"
	"github.com/socklb/socklb/pkg/datapath"
	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/healthcheck"
	"github.com/socklb/socklb/pkg/lbmap"
	"github.com/socklb/socklb/pkg/logfield"
	"github.com/socklb/socklb/pkg/maglev"
	"github.com/socklb/socklb/pkg/sockdestroy"
	"github.com/socklb/socklb/pkg/source"
	"github.com/socklb/socklb/pkg/source/dir"
	"github.com/socklb/socklb/pkg/source/k8s"
	"github.com/socklb/socklb/pkg/syncer"
)

type agentFlags struct {
	node         nodeFlags
	northSouth   northSouthFlags
	maglev       maglevFlags
	fromDir      string
	dirOptions   dir.Options
	kubeconfig   string
	nodeName     string
	zone         string
	nodeIPs      []string
	serviceCIDRs []string // --service-cidr
	logLevel     string
	mapSizes     lbmap.Sizes
	serve        serveFlags
	sockStorage  bool // --socket-storage
	syncPeriod   time.Duration
}

func newAgentCommand() *cobra.Command {
	return agentCommand(&agentFlags{})
}

// agentCommand is the agent command with its flags parsed into f.
func agentCommand(f *agentFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: keep the BPF maps in sync with Services and EndpointSlices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runAgent(ctx, *f)
		},
	}
	f.node.register(cmd)
	f.northSouth.register(cmd)
	f.serve.register(cmd)
	f.maglev.register(cmd)
	cmd.Flags().StringVar(&f.fromDir, "from-dir", "", "standalone mode: read Services, EndpointSlices and Endpoints from the YAML files in this directory")
	cmd.Flags().Int64Var(&f.dirOptions.MaxFileSize, "max-file-size", dir.DefaultMaxFileSize, "standalone mode: the largest file read from --from-dir, in bytes; a larger one is refused with a log line")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "cluster mode: kubeconfig of the API server (default: the in-cluster config when running in a pod)")
	cmd.Flags().StringVar(&f.nodeName, "node-name", "", "this node's name (default: $NODE_NAME, then the hostname)")
	cmd.Flags().StringVar(&f.zone, "zone", "", "standalone mode: this node's zone, as the topology.kubernetes.io/zone label gives it in a cluster (default: none)")
	cmd.Flags().StringSliceVar(&f.nodeIPs, "node-ip", nil, "standalone mode: this node's addresses, repeated or comma-separated, as a Node's InternalIPs (default: none)")
	cmd.Flags().StringSliceVar(&f.serviceCIDRs, "service-cidr", nil, "CIDRs ClusterIPs are allocated from, repeated or comma-separated: a connect to an address in one that no Service holds is refused at once (in a cluster the ServiceCIDR objects add theirs; default: none)")
	cmd.Flags().Uint32Var(&f.mapSizes.Services, "map-size-services", 0, "entries of the services map (a frontend takes one per backend plus one), set when the map is created; changing it needs `socklb cleanup` (default: the size of the pinned map, else 262144)")
	cmd.Flags().BoolVar(&f.sockStorage, "socket-storage", true, "keep per-socket state (reverse NAT, an unconnected UDP socket's backend) in socket-local storage where the kernel has it; false: in the LRU maps only")
	cmd.Flags().DurationVar(&f.syncPeriod, "sync-period", agent.DefaultConfig().ResyncPeriod, "how often a full sync runs with nothing changed, rewriting what someone else changed in the maps (kube-proxy's --iptables-sync-period)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

func runAgent(ctx context.Context, f agentFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	defer log.Sync()
	setMemoryLimit(log)

	nodeName, err := resolveNodeName(f.nodeName)
	if err != nil {
		return err
	}
	node, opts, serviceCIDRs, err := buildInputs(f, nodeName)
	if err != nil {
		return err
	}
	cgroup, err := f.node.cgroupDir()
	if err != nil {
		return err
	}
	log = log.With(zap.String(logfield.Node, nodeName))

	src, client, err := newSource(f, nodeName, log)
	if err != nil {
		return err
	}
	if p, ok := src.(source.Prefetching); ok {
		p.Prefetch() // while the datapath loads
	}

	mode := datapath.XDPMode(f.northSouth.xdpMode)
	dp, err := datapath.Load(datapath.Config{PinDir: f.node.pinDir, Cgroup: cgroup, Devices: f.northSouth.devices, XDPMode: mode, MapSizes: f.mapSizes, NoSockStorage: !f.sockStorage}, log.Named("datapath"))
	if err != nil {
		return err
	}
	// Closing only drops the agent's handles: the pinned datapath keeps
	// balancing while the agent is gone.
	defer dp.Close()

	s, err := syncer.New(dp.Maps, log.Named("syncer"))
	if err != nil {
		return err
	}
	health := healthcheck.New(nil, nil, log.Named("healthcheck"))
	defer health.Close()
	devices := &deviceFollower{dp: dp, explicit: f.northSouth.devices, mode: mode, log: log.Named("datapath"),
		current: f.northSouth.devices, done: f.northSouth.devices != nil}

	cfg := agent.DefaultConfig()
	cfg.Node = node
	cfg.Options = opts
	cfg.ServiceCIDRs = serviceCIDRs
	cfg.ResyncPeriod = f.syncPeriod
	cfg.OnNode = devices.onNode
	cfg.RepairDatapath = dp.RepairPins
	synced := collectorTargets(log)
	cfg.AfterSync = func(state *desired.State) {
		synced()
		if err := health.Sync(healthChecksOf(state)); err != nil {
			log.Error("serve health checks", zap.Error(err))
		}
	}
	stale, err := sockdestroy.NewRunner(dp.Maps, log.Named("sockdestroy"))
	if err != nil {
		return err
	}
	defer stale.Close()
	tables := maglev.NewWriter(dp.Maps, f.maglev.tableSize, log.Named("maglev"))
	cfg.AfterSyncResult = func(state *desired.State, res syncer.Result) {
		stale.AfterSync(state, res)
		tables.AfterSync(state, res)
	}
	if client != nil {
		record, stop := problemEvents(client, nodeName, log.Named("events"))
		defer stop()
		cfg.OnProblem = record
	}
	startServers(ctx, f.serve, dp.Maps, src, log).hook(&cfg)
	log.Info("agent running", zap.String(logfield.PinDir, f.node.pinDir), zap.String(logfield.Cgroup, cgroup), zap.String(logfield.Version, version))
	err = agent.New(cfg, src, s, log.Named("agent")).Run(ctx)
	log.Info("agent stopped; the datapath stays attached")
	return err
}

// buildInputs reads from the flags what the desired state is built with:
// the node (standalone mode: its addresses from --node-ip or --devices), the
// build options and the Service CIDRs.
func buildInputs(f agentFlags, nodeName string) (desired.NodeInfo, desired.Options, []netip.Prefix, error) {
	node, err := standaloneNode(f, nodeName)
	if err != nil {
		return node, desired.Options{}, nil, err
	}
	opts, err := f.northSouth.options()
	if err != nil {
		return node, opts, nil, err
	}
	if err := f.maglev.apply(&opts); err != nil {
		return node, opts, nil, err
	}
	serviceCIDRs, err := parsePrefixes("--service-cidr", f.serviceCIDRs)
	if err != nil {
		return node, opts, nil, err
	}
	if f.syncPeriod <= 0 {
		return node, opts, nil, fmt.Errorf("--sync-period %s: want a positive duration", f.syncPeriod)
	}
	if f.serve.profiling && f.serve.metricsAddress == "" {
		return node, opts, nil, errors.New("--profiling: the profiles are served on --metrics-address, which is empty")
	}
	if f.fromDir != "" {
		if node, err = standaloneAddresses(node, f.northSouth.devices); err != nil {
			return node, opts, nil, err
		}
	}
	return node, opts, serviceCIDRs, nil
}

// newSource makes the source the flags choose, and in cluster mode the API
// client (nil in standalone mode).
func newSource(f agentFlags, nodeName string, log *zap.Logger) (source.Source, kubernetes.Interface, error) {
	if f.fromDir != "" && f.kubeconfig != "" {
		return nil, nil, errors.New("choose one source: --from-dir or --kubeconfig")
	}
	if f.fromDir != "" {
		st, err := os.Stat(f.fromDir)
		if err != nil {
			return nil, nil, fmt.Errorf("read --from-dir: %w", err)
		}
		if !st.IsDir() {
			return nil, nil, fmt.Errorf("read --from-dir: %s is not a directory", f.fromDir)
		}
		return dir.NewSource(f.fromDir, log.Named("source"), f.dirOptions), nil, nil
	}
	var cfg *rest.Config
	var err error
	if f.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return nil, nil, fmt.Errorf("read --kubeconfig %s: %w", f.kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, nil, errors.New("choose where Services come from: --from-dir DIR, --kubeconfig FILE, or run in a pod")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read the in-cluster config: %w", err)
		}
	}
	// Protobuf is cheaper to decode than JSON for thousands of objects.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.UserAgent = "socklb/" + version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("make an API client: %w", err)
	}
	log.Info("cluster mode", zap.String(logfield.APIServer, cfg.Host))
	src, err := k8s.NewSource(client, nodeName, log.Named("source"))
	return src, client, err
}

func resolveNodeName(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := os.Getenv("NODE_NAME"); env != "" {
		return env, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("find the node name: %w", err)
	}
	return host, nil
}

// standaloneNode describes the node from the flags; in a cluster the Node
// object replaces it once the source has read it.
func standaloneNode(f agentFlags, nodeName string) (desired.NodeInfo, error) {
	if f.fromDir == "" && (f.zone != "" || len(f.nodeIPs) > 0) {
		return desired.NodeInfo{}, errors.New("--zone and --node-ip are for standalone mode (--from-dir): in a cluster the Node object gives them")
	}
	node := desired.NodeInfo{Name: nodeName, Zone: f.zone}
	for _, s := range f.nodeIPs {
		addr, err := desired.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return desired.NodeInfo{}, fmt.Errorf("read --node-ip: %w", err)
		}
		na := desired.NodeAddress{Type: corev1.NodeInternalIP, Addr: addr}
		if !slices.Contains(node.Addresses, na) {
			node.Addresses = append(node.Addresses, na)
		}
	}
	return node, nil
}
