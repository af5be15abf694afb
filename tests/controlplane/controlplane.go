// Package controlplane runs a real, kubelet-less Kubernetes control plane on
// 127.0.0.1 for tests: etcd, kube-apiserver and a kube-controller-manager that
// runs only the EndpointSlice, namespace and garbage-collector controllers.
// Pods are written straight into the API (see CreatePod), so the real
// EndpointSlice controller publishes the endpoints the agent consumes.
//
// The binaries come from tests/controlplane/build.sh (see Binaries).
package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultServiceClusterIPRange is the Service CIDR the apiserver allocates
// ClusterIPs from unless Options.ServiceClusterIPRange says otherwise.
const DefaultServiceClusterIPRange = "10.96.0.0/16"

// Controllers are the kube-controller-manager controllers the harness runs.
// nodelifecycle is left out on purpose: fake nodes send no heartbeats, so it
// would taint them and evict their pods. serviceaccount is not needed because
// the ServiceAccount admission plugin is disabled.
const Controllers = "endpointslice,endpointslicemirroring,namespace,garbagecollector"

const (
	defaultStartTimeout = 90 * time.Second
	defaultStopTimeout  = 10 * time.Second
	pollInterval        = 100 * time.Millisecond
)

// Options configures Start. The zero value is usable.
type Options struct {
	// Dir holds certificates, etcd data, the kubeconfig and logs. Empty means
	// a new temporary directory that Stop removes; a caller's Dir is left in
	// place (t.TempDir() cleans up after itself).
	Dir string
	// BinDir holds kube-apiserver, kube-controller-manager and kubectl.
	// Empty means Binaries(ctx), which builds them when missing.
	BinDir string
	// EtcdPath defaults to DefaultEtcdPath.
	EtcdPath string
	// ServiceClusterIPRange defaults to DefaultServiceClusterIPRange; give
	// "10.96.0.0/16,fd00:10:96::/112" for dual-stack Services.
	ServiceClusterIPRange string
	// ExtraAPIServerArgs and ExtraControllerManagerArgs are appended to the
	// flags the harness passes, e.g. --feature-gates.
	ExtraAPIServerArgs         []string
	ExtraControllerManagerArgs []string
	// StartTimeout bounds the wait for each component to become ready.
	StartTimeout time.Duration
	// StopTimeout is how long a component gets after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
}

// LogPaths are the files each component's stdout and stderr go to.
type LogPaths struct {
	Etcd              string
	APIServer         string
	ControllerManager string
}

// ControlPlane is a running etcd, kube-apiserver and kube-controller-manager.
type ControlPlane struct {
	// Dir is the state directory.
	Dir string
	// BinDir holds the Kubernetes binaries, including kube-proxy.
	BinDir        string
	KubectlPath   string
	KubeProxyPath string
	// KubeconfigPath is an admin kubeconfig (group system:masters) with the
	// certificates embedded.
	KubeconfigPath string
	// APIServerURL is https://127.0.0.1:<port>; the port survives
	// StopAPIServer/StartAPIServer.
	APIServerURL string
	// CACertPath is the CA that signed the apiserver's serving certificate.
	CACertPath string
	// EtcdURL is etcd's client URL (plain HTTP on 127.0.0.1).
	EtcdURL    string
	RESTConfig *rest.Config
	Client     kubernetes.Interface
	Logs       LogPaths

	logger       *zap.Logger
	stopTimeout  time.Duration
	startTimeout time.Duration
	removeDir    bool

	apiServerPath string
	apiServerArgs []string
	healthClient  *http.Client

	mu                sync.Mutex
	etcd              *process
	apiServer         *process
	controllerManager *process
	stopped           bool
}

// PIDs are the process IDs of etcd, kube-apiserver and
// kube-controller-manager, for a caller that watches what they cost.
func (cp *ControlPlane) PIDs() []int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var pids []int
	for _, p := range []*process{cp.etcd, cp.apiServer, cp.controllerManager} {
		if p != nil {
			pids = append(pids, p.pid())
		}
	}
	return pids
}

// Start brings up etcd, kube-apiserver and kube-controller-manager and
// returns once /readyz answers ok and the controller-manager is healthy.
// ctx bounds only the startup; the processes run until Stop. On error
// nothing is left running and the error carries the failing component's log.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	startedAt := time.Now()
	cp := &ControlPlane{
		logger:       opts.Logger,
		stopTimeout:  opts.StopTimeout,
		startTimeout: opts.StartTimeout,
	}
	if cp.logger == nil {
		cp.logger = zap.NewNop()
	}
	if cp.stopTimeout <= 0 {
		cp.stopTimeout = defaultStopTimeout
	}
	if cp.startTimeout <= 0 {
		cp.startTimeout = defaultStartTimeout
	}
	serviceRange := opts.ServiceClusterIPRange
	if serviceRange == "" {
		serviceRange = DefaultServiceClusterIPRange
	}
	etcdPath := opts.EtcdPath
	if etcdPath == "" {
		etcdPath = DefaultEtcdPath
	}

	cp.BinDir = opts.BinDir
	if cp.BinDir == "" {
		binDir, err := Binaries(ctx)
		if err != nil {
			return nil, fmt.Errorf("starting control plane: %w", err)
		}
		cp.BinDir = binDir
	}
	cp.KubectlPath = filepath.Join(cp.BinDir, "kubectl")
	cp.KubeProxyPath = filepath.Join(cp.BinDir, "kube-proxy")
	cp.apiServerPath = filepath.Join(cp.BinDir, "kube-apiserver")
	controllerManagerPath := filepath.Join(cp.BinDir, "kube-controller-manager")
	for _, path := range []string{etcdPath, cp.apiServerPath, controllerManagerPath, cp.KubectlPath} {
		if !isExecutable(path) {
			return nil, fmt.Errorf("starting control plane: %s is missing or not executable (run tests/controlplane/build.sh)", path)
		}
	}

	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating state directory %s: %w", opts.Dir, err)
		}
		cp.Dir = opts.Dir
	} else {
		dir, err := os.MkdirTemp("", "socklb-controlplane-")
		if err != nil {
			return nil, fmt.Errorf("creating state directory: %w", err)
		}
		cp.Dir = dir
		cp.removeDir = true
	}
	cp.Logs = LogPaths{
		Etcd:              filepath.Join(cp.Dir, "etcd.log"),
		APIServer:         filepath.Join(cp.Dir, "kube-apiserver.log"),
		ControllerManager: filepath.Join(cp.Dir, "kube-controller-manager.log"),
	}

	if err := cp.start(ctx, etcdPath, controllerManagerPath, serviceRange, opts); err != nil {
		if stopErr := cp.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	cp.logger.Info("control plane ready",
		zap.String("apiserver", cp.APIServerURL),
		zap.String("kubeconfig", cp.KubeconfigPath),
		zap.String("dir", cp.Dir),
		zap.Duration("startup", time.Since(startedAt)))
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context, etcdPath, controllerManagerPath, serviceRange string, opts Options) error {
	pki, err := writePKI(filepath.Join(cp.Dir, "pki"))
	if err != nil {
		return fmt.Errorf("writing certificates: %w", err)
	}
	cp.CACertPath = pki.caCertPath

	ports, err := freeLoopbackPorts(4)
	if err != nil {
		return err
	}
	etcdClientPort, etcdPeerPort, apiServerPort, controllerManagerPort := ports[0], ports[1], ports[2], ports[3]
	cp.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClientPort)
	etcdPeerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	cp.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(apiServerPort)

	cp.KubeconfigPath = filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.KubeconfigPath, cp.APIServerURL, pki); err != nil {
		return err
	}
	cp.RESTConfig = &rest.Config{
		Host: cp.APIServerURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   pki.caCertPEM,
			CertData: pki.adminCertPEM,
			KeyData:  pki.adminKeyPEM,
		},
		// Tests create objects in bursts; client-go's default 5 QPS would make
		// them measure the client's rate limiter instead of the system.
		QPS:   200,
		Burst: 400,
	}
	cp.Client, err = kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	cp.healthClient, err = rest.HTTPClientFor(cp.RESTConfig)
	if err != nil {
		return fmt.Errorf("creating apiserver health client: %w", err)
	}

	etcdArgs := []string{
		"--name=socklb-test",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + cp.EtcdURL,
		"--advertise-client-urls=" + cp.EtcdURL,
		"--listen-peer-urls=" + etcdPeerURL,
		"--initial-advertise-peer-urls=" + etcdPeerURL,
		"--initial-cluster=socklb-test=" + etcdPeerURL,
		// The data is thrown away with the test; fsync only costs time.
		"--unsafe-no-fsync",
		"--logger=zap",
		"--log-outputs=stderr",
	}
	cp.etcd, err = startProcess("etcd", etcdPath, etcdArgs, cp.Logs.Etcd)
	if err != nil {
		return err
	}
	if err := cp.waitUntil(ctx, cp.etcd, "etcd /health", cp.etcdHealthy); err != nil {
		return err
	}

	cp.apiServerArgs = append([]string{
		"--etcd-servers=" + cp.EtcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiServerPort),
		// 1.37 refuses a loopback advertise address unless it does not have to
		// publish it in the kubernetes Service's endpoints.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + pki.servingCertPath,
		"--tls-private-key-file=" + pki.servingKeyPath,
		"--client-ca-file=" + pki.caCertPath,
		// Unused because the serving certificate is given, but the default
		// /var/run/kubernetes would be shared between test runs.
		"--cert-dir=" + filepath.Join(cp.Dir, "apiserver-certs"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + serviceRange,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki.serviceAccountPub,
		"--service-account-signing-key-file=" + pki.serviceAccountKey,
		// Without a kubelet nothing mounts tokens, and pods then need no
		// ServiceAccount object in their namespace.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
		// Without it, SIGTERM waits for open watches (the controller-manager's,
		// an agent's informers) until --request-timeout, 60 s, so every
		// StopAPIServer would end in SIGKILL; measured 70 s against 1.2 s.
		"--shutdown-watch-termination-grace-period=2s",
	}, opts.ExtraAPIServerArgs...)
	if err := cp.startAPIServer(ctx); err != nil {
		return err
	}

	controllerManagerArgs := append([]string{
		"--kubeconfig=" + cp.KubeconfigPath,
		"--controllers=" + Controllers,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(controllerManagerPort),
		"--cert-dir=" + filepath.Join(cp.Dir, "controller-manager-certs"),
		// A single instance: leader election would only delay the start by a
		// lease acquisition.
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		// Scale tests create thousands of Services; the default 20 QPS would
		// make EndpointSlice publication the bottleneck.
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--profiling=false",
	}, opts.ExtraControllerManagerArgs...)
	controllerManagerHealthURL := "https://127.0.0.1:" + strconv.Itoa(controllerManagerPort) + "/healthz"
	cp.controllerManager, err = startProcess("kube-controller-manager", controllerManagerPath, controllerManagerArgs, cp.Logs.ControllerManager)
	if err != nil {
		return err
	}
	return cp.waitUntil(ctx, cp.controllerManager, "kube-controller-manager /healthz", func(ctx context.Context) error {
		return controllerManagerHealthy(ctx, controllerManagerHealthURL)
	})
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	apiServer, err := startProcess("kube-apiserver", cp.apiServerPath, cp.apiServerArgs, cp.Logs.APIServer)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.apiServer = apiServer
	cp.mu.Unlock()
	return cp.waitUntil(ctx, apiServer, "kube-apiserver /readyz", cp.apiServerReady)
}

// StartAPIServer restarts kube-apiserver after StopAPIServer, on the same
// port with the same certificates and etcd, and waits for /readyz.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	running := cp.apiServer != nil && cp.apiServer.exitedError() == nil
	stopped := cp.stopped
	cp.mu.Unlock()
	if stopped {
		return errors.New("restarting kube-apiserver: the control plane was stopped")
	}
	if running {
		return errors.New("restarting kube-apiserver: it is already running")
	}
	startedAt := time.Now()
	if err := cp.startAPIServer(ctx); err != nil {
		return fmt.Errorf("restarting kube-apiserver: %w", err)
	}
	if err := cp.waitNamespaceControllerWatching(ctx); err != nil {
		return fmt.Errorf("restarting kube-apiserver: %w", err)
	}
	cp.logger.Info("kube-apiserver restarted", zap.Duration("startup", time.Since(startedAt)))
	return nil
}

// waitNamespaceControllerWatching creates a namespace, deletes it and waits
// until the namespace controller has removed it. After an apiserver restart
// the controller-manager's informers list again with a back-off of up to
// 30 s, and a test namespace deleted in that window stayed Terminating past
// its test's cleanup, its Services still programmed in the next test.
func (cp *ControlPlane) waitNamespaceControllerWatching(ctx context.Context) error {
	name := fmt.Sprintf("socklb-restart-probe-%d", time.Now().UnixNano())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating probe namespace %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := DeleteNamespace(ctx, cp.Client, name); err != nil {
		return fmt.Errorf("waiting for the namespace controller to watch again: %w", err)
	}
	return nil
}

// StopAPIServer stops only kube-apiserver, leaving etcd and the
// controller-manager running, to simulate an apiserver outage.
func (cp *ControlPlane) StopAPIServer() error {
	cp.mu.Lock()
	apiServer := cp.apiServer
	cp.mu.Unlock()
	if apiServer == nil {
		return errors.New("stopping kube-apiserver: it was never started")
	}
	stoppingAt := time.Now()
	if err := apiServer.stop(cp.stopTimeout); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	cp.logger.Info("kube-apiserver stopped", zap.Int("pid", apiServer.pid()), zap.Duration("took", time.Since(stoppingAt)))
	return nil
}

// Stop terminates the controller-manager, kube-apiserver and etcd (SIGTERM,
// then SIGKILL after Options.StopTimeout), waits for them and removes the
// state directory if Start created it. Calling it again does nothing.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	if cp.stopped {
		cp.mu.Unlock()
		return nil
	}
	cp.stopped = true
	// Dependents first, so the controller-manager and apiserver do not spend
	// their shutdown retrying a vanished etcd.
	processes := []*process{cp.controllerManager, cp.apiServer, cp.etcd}
	cp.mu.Unlock()

	var errs []error
	for _, p := range processes {
		if p == nil {
			continue
		}
		stoppingAt := time.Now()
		if err := p.stop(cp.stopTimeout); err != nil {
			errs = append(errs, err)
		}
		cp.logger.Debug("component stopped", zap.String("component", p.name), zap.Int("pid", p.pid()), zap.Duration("took", time.Since(stoppingAt)))
	}
	if cp.healthClient != nil {
		cp.healthClient.CloseIdleConnections()
	}
	if cp.removeDir && cp.Dir != "" {
		if err := os.RemoveAll(cp.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing state directory %s: %w", cp.Dir, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stopping control plane: %w", err)
	}
	return nil
}

// Kubectl runs the kubectl built with the control plane against it and
// returns its stdout; the error carries stderr.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	command := exec.CommandContext(ctx, cp.KubectlPath, append([]string{"--kubeconfig=" + cp.KubeconfigPath}, args...)...)
	command.Stdout = &stdout
	command.Stderr = &stderr
	if err := command.Run(); err != nil {
		return stdout.String(), fmt.Errorf("running kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// LogTails returns the last lines of each component's log, for a failing
// test to print.
func (cp *ControlPlane) LogTails(lines int) string {
	var out strings.Builder
	for _, log := range []struct{ name, path string }{
		{"etcd", cp.Logs.Etcd},
		{"kube-apiserver", cp.Logs.APIServer},
		{"kube-controller-manager", cp.Logs.ControllerManager},
	} {
		tail, err := TailFile(log.path, lines)
		if err != nil {
			tail = err.Error()
		}
		fmt.Fprintf(&out, "---- %s (%s)\n%s\n", log.name, log.path, tail)
	}
	return out.String()
}

// waitUntil polls check until it succeeds, the component exits, or the start
// timeout or ctx ends. Failures carry the component's log tail because the
// state directory is removed right after.
func (cp *ControlPlane) waitUntil(ctx context.Context, p *process, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, cp.startTimeout)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	lastErr := errors.New("not checked yet")
	for {
		if err := p.exitedError(); err != nil {
			return fmt.Errorf("waiting for %s: %w\n%s", what, err, logTail(p.logPath))
		}
		checkCtx, cancelCheck := context.WithTimeout(ctx, 2*time.Second)
		lastErr = check(checkCtx)
		cancelCheck()
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last check: %v)\n%s", what, ctx.Err(), lastErr, logTail(p.logPath))
		case <-ticker.C:
		}
	}
}

func logTail(path string) string {
	tail, err := TailFile(path, 40)
	if err != nil {
		return err.Error()
	}
	return "last lines of " + path + ":\n" + tail
}

func (cp *ControlPlane) etcdHealthy(ctx context.Context) error {
	body, err := httpGet(ctx, http.DefaultClient, cp.EtcdURL+"/health")
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"health":"true"`) {
		return fmt.Errorf("etcd /health answered %q", body)
	}
	return nil
}

func (cp *ControlPlane) apiServerReady(ctx context.Context) error {
	body, err := httpGet(ctx, cp.healthClient, cp.APIServerURL+"/readyz")
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("/readyz answered %q", body)
	}
	return nil
}

// APIServerReady reports whether kube-apiserver's /readyz answers ok.
func (cp *ControlPlane) APIServerReady(ctx context.Context) error {
	return cp.apiServerReady(ctx)
}

// controllerManagerHealthy skips certificate verification because the
// controller-manager serves a self-signed certificate it generates at start;
// the request never leaves 127.0.0.1 and carries no credentials.
func controllerManagerHealthy(ctx context.Context, url string) error {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	defer client.CloseIdleConnections()
	body, err := httpGet(ctx, client, url)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) != "ok" {
		return fmt.Errorf("/healthz answered %q", body)
	}
	return nil
}

func httpGet(ctx context.Context, client *http.Client, url string) (string, error) {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("building request for %s: %w", url, err)
	}
	response, err := client.Do(request)
	if err != nil {
		return "", fmt.Errorf("requesting %s: %w", url, err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("reading answer of %s: %w", url, err)
	}
	if response.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s answered %s: %s", url, response.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}
