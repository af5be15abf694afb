package dir

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/socklb/socklb/pkg/desired"
	"github.com/socklb/socklb/pkg/source"
	"github.com/socklb/socklb/tests/sandbox"
)

// The benchmarks measure the directory source and the desired-state build
// the agent's syncs run on it (no syncer, no maps): each runs in a child
// process of this test binary so that the RSS is theirs and not the
// fixture writer's. A full build reads the source one Service at a time
// (Stream, what the agent does) or all of it decoded at once (Snapshot),
// side by side. Figures, not assertions: compare the rows of one run.

const (
	benchServices = 30000
	benchChanges  = 20
	// childEnv makes the test binary a benchmark's child: it measures the
	// source on the directory named and prints the figures.
	childEnv = "SOCKLB_DIR_BENCH_CHILD"
	// buildEnv says how the child's full builds read the source: "stream"
	// or "snapshot".
	buildEnv = childEnv + "_BUILD"
)

// benchBuilds are the two ways a full build can read the source.
var benchBuilds = []string{"stream", "snapshot"}

// benchFigures is what a child measured.
type benchFigures struct {
	ColdMS      float64   `json:"cold_ms"`
	ColdRSSMiB  float64   `json:"cold_rss_mib"`
	ChangeMS    []float64 `json:"change_ms"`
	FirstRSSMiB float64   `json:"first_change_rss_mib"`
	LastRSSMiB  float64   `json:"last_change_rss_mib"`
	PeakRSSMiB  float64   `json:"peak_rss_mib"`
	HeapMiB     float64   `json:"heap_mib"`
	Services    int       `json:"services"`
	Frontends   int       `json:"frontends"`
	// ResyncMS and ResyncPeakRSSMiB are a second full build after the
	// changes (what a Node change makes the agent do) and the peak after
	// it.
	ResyncMS         float64 `json:"resync_ms"`
	ResyncPeakRSSMiB float64 `json:"resync_peak_rss_mib"`
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := runBenchChild(dir, os.Getenv(buildEnv), os.Getenv(childEnv+"_CHANGES") != ""); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchLayouts are the directories measured: one file per Service (a
// Service and its EndpointSlice of three endpoints), and the same objects
// in ten large multi-document files.
var benchLayouts = []struct {
	name  string
	files int
}{
	{"one-file-per-service", benchServices},
	{"ten-multi-document-files", 10},
}

func BenchmarkColdStart30000(b *testing.B) {
	for _, layout := range benchLayouts {
		dir := writeBenchDir(b, layout.files)
		for _, build := range benchBuilds {
			b.Run(layout.name+"/"+build, func(b *testing.B) {
				var fig benchFigures
				for b.Loop() {
					fig = runChild(b, dir, build, false)
				}
				b.ReportMetric(fig.ColdMS, "ms")
				b.ReportMetric(fig.ColdRSSMiB, "rss-MiB")
				b.ReportMetric(fig.PeakRSSMiB, "peak-rss-MiB")
				b.ReportMetric(fig.HeapMiB, "heap-MiB")
				b.ReportMetric(float64(fig.Services), "services")
				b.ReportMetric(float64(fig.Frontends), "frontends")
			})
		}
	}
}

func BenchmarkOneFileChange30000(b *testing.B) {
	for _, layout := range benchLayouts {
		for _, build := range benchBuilds {
			b.Run(layout.name+"/"+build, func(b *testing.B) {
				dir := writeBenchDir(b, layout.files) // the changes edit it
				var fig benchFigures
				for b.Loop() {
					fig = runChild(b, dir, build, true)
				}
				sorted := slices.Sorted(slices.Values(fig.ChangeMS))
				b.ReportMetric(sorted[len(sorted)/2], "p50-ms")
				b.ReportMetric(sorted[len(sorted)-1], "max-ms")
				b.ReportMetric(fig.FirstRSSMiB, "rss-MiB-after-1")
				b.ReportMetric(fig.LastRSSMiB, "rss-MiB-after-20")
				b.ReportMetric(fig.ResyncMS, "resync-ms")
				b.ReportMetric(fig.ResyncPeakRSSMiB, "peak-rss-MiB")
			})
		}
	}
}

// writeBenchDir writes benchServices Services into files files.
func writeBenchDir(b *testing.B, files int) string {
	b.Helper()
	dir := b.TempDir()
	per := benchServices / files
	for f := range files {
		var content strings.Builder
		for i := f * per; i < (f+1)*per; i++ {
			content.WriteString(serviceWithSlice(fmt.Sprintf("svc-%05d", i), i))
			content.WriteString("---\n")
		}
		if err := os.WriteFile(filepath.Join(dir, benchFileName(f, files)), []byte(content.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

func benchFileName(f, files int) string {
	if files == benchServices {
		return fmt.Sprintf("svc-%05d.yaml", f)
	}
	return fmt.Sprintf("part-%02d.yaml", f)
}

func runChild(b *testing.B, dir, build string, changes bool) benchFigures {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, buildEnv+"="+build)
	if changes {
		cmd.Env = append(cmd.Env, childEnv+"_CHANGES=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bench child: %v", err)
	}
	var fig benchFigures
	if err := json.Unmarshal(out, &fig); err != nil {
		b.Fatalf("bench child output %q: %v", out, err)
	}
	return fig
}

// runBenchChild is the measured process: a cold start of the source on
// dir (the read and the full build the agent's first sync runs) and, with
// changes, benchChanges one-file changes through Run (an event, the
// debounce, the read), each timed until Objects, which the agent's sync
// of a change reads, shows it and the Service is built again; then one
// more full build, as the agent runs after a Node change.
func runBenchChild(dir, build string, changes bool) error {
	var fig benchFigures
	src := NewSource(dir, zap.NewNop(), Options{})
	builder := desired.NewBuilder(desired.NodeInfo{Name: "bench-node"})
	fullBuild := func() error {
		switch build {
		case "stream":
			_, objects := src.Stream()
			builder.ResetEach(builder.Node(), objects)
		case "snapshot":
			snap := src.Snapshot()
			builder.Reset(builder.Node(), snap.Services, snap.EndpointSlices)
		default:
			return fmt.Errorf("unknown full build %q", build)
		}
		return nil
	}
	start := time.Now()
	if _, err := src.read(nil, nil, true); err != nil {
		return err
	}
	if err := fullBuild(); err != nil {
		return err
	}
	fig.ColdMS = msSince(start)
	fig.ColdRSSMiB = rssMiB("VmRSS")
	fig.Frontends = len(builder.State().Frontends)
	fig.Services = len(src.assembled.services)
	if changes {
		if err := measureChanges(dir, src, builder, &fig); err != nil {
			return err
		}
		start = time.Now()
		if err := fullBuild(); err != nil {
			return err
		}
		fig.ResyncMS = msSince(start)
		fig.ResyncPeakRSSMiB = rssMiB("VmHWM")
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fig.HeapMiB = float64(ms.HeapAlloc) / (1 << 20)
	fig.PeakRSSMiB = rssMiB("VmHWM")
	runtime.KeepAlive(src)
	runtime.KeepAlive(builder)
	return json.NewEncoder(os.Stdout).Encode(fig)
}

func measureChanges(dir string, src *Source, builder *desired.Builder, fig *benchFigures) error {
	// Run reads the directory once more (from the cache: nothing decoded)
	// before it watches.
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	<-changed
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for i := range benchChanges {
		name := entries[i*len(entries)/benchChanges].Name()
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		// A new clusterIP for the file's first Service, a change any
		// layout has.
		ip := fmt.Sprintf("10.97.0.%d", i+1)
		next := withClusterIP(data, ip)
		ref := firstService(data)
		start := time.Now()
		if err := os.WriteFile(path, next, 0o644); err != nil {
			return err
		}
		for !objectsHaveClusterIP(src, ref, ip) {
			select {
			case <-changed:
			case err := <-done:
				return fmt.Errorf("run ended: %v", err)
			case <-time.After(30 * time.Second):
				return fmt.Errorf("change %d not seen within 30 s", i)
			}
		}
		for _, ref := range src.TakeChanges().Services { // as the agent's sync does
			svc, slices := src.Objects(ref)
			builder.Update(ref, svc, slices)
		}
		fig.ChangeMS = append(fig.ChangeMS, msSince(start))
		if i == 0 {
			fig.FirstRSSMiB = rssMiB("VmRSS")
		}
	}
	fig.LastRSSMiB = rssMiB("VmRSS")
	cancel()
	return <-done
}

// withClusterIP gives the first Service of a file another clusterIP.
func withClusterIP(data []byte, ip string) []byte {
	const prefix = "  clusterIP: "
	s := string(data)
	i := strings.Index(s, prefix)
	if i < 0 {
		return data
	}
	end := i + strings.IndexByte(s[i:], '\n')
	return []byte(s[:i] + prefix + ip + s[end:])
}

var serviceName = regexp.MustCompile(`(?m)^kind: Service\nmetadata: \{name: ([a-z0-9-]+)\}`)

// firstService names a file's first Service, as serviceWithSlice writes it.
func firstService(data []byte) source.ServiceRef {
	m := serviceName.FindSubmatch(data)
	if m == nil {
		return source.ServiceRef{}
	}
	return source.ServiceRef{Namespace: "default", Name: string(m[1])}
}

func objectsHaveClusterIP(src *Source, ref source.ServiceRef, ip string) bool {
	svc, _ := src.Objects(ref)
	return svc != nil && svc.Spec.ClusterIP == ip
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// rssMiB reads a memory figure of this process (VmRSS, VmHWM) in MiB, -1
// when it cannot.
func rssMiB(field string) float64 {
	mib, err := sandbox.ProcStatusMiB(os.Getpid(), field)
	if err != nil {
		return -1
	}
	return mib
}

// BenchmarkDecodeFile is the decoding of one file of a Service and its
// EndpointSlice of three endpoints, the unit of a cold start's work: its
// time, bytes and allocations per file, which the collector pays for
// 30,000 times over at a cold start.
func BenchmarkDecodeFile(b *testing.B) {
	data := []byte(serviceWithSlice("svc-00001", 1))
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, _, err := decodeStored("svc-00001.yaml", data, nil, nil, indexedDocuments); err != nil {
			b.Fatal(err)
		}
	}
}
