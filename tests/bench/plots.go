//go:build bench

package bench

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot file names, written next to docs/benchmarks.md.
const (
	latencyPlot     = "bench-latency.png"
	propagationPlot = "bench-propagation.png"
	memoryPlot      = "bench-memory.png"
)

// series is one line of a plot: median per scale, with the round range.
type series struct {
	name   string
	points plotter.XYs
	errs   plotter.YErrors
}

func (s series) Len() int                        { return len(s.points) }
func (s series) XY(i int) (float64, float64)     { return s.points[i].X, s.points[i].Y }
func (s series) YError(i int) (float64, float64) { return s.errs[i].Low, s.errs[i].High }
func (s *series) add(x float64, sp Spread) {
	s.addPoint(x, sp.Median, sp.Median-sp.Min, sp.Max-sp.Median)
}
func (s *series) addPoint(x, y, low, high float64) {
	s.points = append(s.points, plotter.XY{X: x, Y: y})
	s.errs = append(s.errs, struct{ Low, High float64 }{low, high})
}

// WritePlots writes the three plots into dir and returns their names.
func WritePlots(dir string, r *Results) ([]string, error) {
	var latency, propagation, memory []series
	for _, c := range r.Contenders() {
		p50 := series{name: c + " p50"}
		p99 := series{name: c + " p99"}
		prop := series{name: c}
		rss := series{name: c}
		for _, scale := range r.Scales() {
			x := float64(scale)
			key50, key99 := latLastP50, latLastP99
			if c == noProxy {
				key50, key99 = latDirectP50, latDirectP99
			}
			if v, ok := r.Figure(scale, c, key50); ok {
				p50.add(x, v)
			}
			if v, ok := r.Figure(scale, c, key99); ok {
				p99.add(x, v)
			}
			if pp50, _, rounds, n := r.Propagation(scale, c); n > 0 {
				prop.addPoint(x, ms(pp50), ms(pp50)-rounds.Min, rounds.Max-ms(pp50))
			}
			if v, ok := r.Figure(scale, c, rssMiB); ok {
				rss.add(x, v)
			}
		}
		latency = append(latency, p50, p99)
		propagation = append(propagation, prop)
		memory = append(memory, rss)
	}
	plots := []struct {
		file, title, y string
		logY           bool
		lines          []series
	}{
		{latencyPlot, "New connection through the last Service (no proxy: to the pod)", "latency µs", true, latency},
		{propagationPlot, "EndpointSlice change → datapath, p50 (bars: round range)", "ms", true, propagation},
		{memoryPlot, "Proxy resident memory", "RSS MiB", false, memory},
	}
	var written []string
	for _, p := range plots {
		if err := savePlot(filepath.Join(dir, p.file), p.title, p.y, p.logY, p.lines); err != nil {
			return written, err
		}
		written = append(written, p.file)
	}
	return written, nil
}

// savePlot draws lines over a logarithmic Service axis; logY for figures
// spanning decades (p50 beside p99, iptables beside socklb).
func savePlot(path, title, yLabel string, logY bool, lines []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "Services"
	p.Y.Label.Text = yLabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	drawn := 0
	for i, s := range lines {
		if s.Len() == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(s)
		if err != nil {
			return fmt.Errorf("plotting %s: %w", s.name, err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i % 2)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		bars, err := plotter.NewYErrorBars(s)
		if err != nil {
			return fmt.Errorf("plotting the range of %s: %w", s.name, err)
		}
		bars.Color = plotutil.Color(i)
		p.Add(line, points, bars)
		p.Legend.Add(s.name, line, points)
		drawn++
	}
	if drawn == 0 {
		return fmt.Errorf("plotting %s: no data", path)
	}
	if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("saving plot %s: %w", path, err)
	}
	return nil
}
