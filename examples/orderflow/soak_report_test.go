package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The soak run's figures: the flatness check of the long run, the summary,
// the ASCII charts and the CSV of the samples.

// soakFlatLimit is how far RSS and goroutines may move over the window of
// the long run.
const soakFlatLimit = 0.10

// figure is one quantity of one worker over the flatness window: the
// medians of its first and last edges, its extremes.
type figure struct {
	name        string
	first, last float64
	lo, hi      float64
}

func (f figure) change() float64 {
	if f.first == 0 {
		return 0
	}
	return (f.last - f.first) / f.first
}

// workerFigures are a worker's figures over the window.
type workerFigures struct {
	name    string
	samples int
	cpu     float64 // share of one core over the window
	figs    []figure
}

func (w workerFigures) fig(name string) figure {
	for _, f := range w.figs {
		if f.name == name {
			return f
		}
	}
	return figure{name: name}
}

// soakSummary is what the run shows.
type soakSummary struct {
	cfg      soakConfig
	loadEnd  time.Duration
	from, to time.Duration // the window
	edge     time.Duration
	workers  []workerFigures
	apis     []apiPeak
	redis    []soakSample
	pgMax    int
	charts   string
}

// apiPeak is the highest of each figure one api process reached.
type apiPeak struct {
	name            string
	rss, heap       int64
	goroutines, fds int
}

// soakWindow is the flatness window of a run of d whose load ended at
// loadEnd (d and the last api's last orders): its last two thirds (the
// last 20 minutes of 30), the first third being the warm-up; edge is a
// tenth of the window (2 minutes), at least two samples, whose medians
// are compared.
func soakWindow(d, loadEnd, interval time.Duration) (from, to, edge time.Duration) {
	from, to = d/3, max(d, loadEnd)
	return from, to, max((to-from)/10, 2*interval)
}

// summarize computes the figures of the workers named, over the window of
// the load.
func summarize(samples []soakSample, workers []string, loadEnd time.Duration, cfg soakConfig) soakSummary {
	s := soakSummary{cfg: cfg, loadEnd: loadEnd}
	s.from, s.to, s.edge = soakWindow(cfg.duration, loadEnd, cfg.interval)
	for _, name := range workers {
		var in []soakSample
		for _, x := range samples {
			if x.proc == name && x.phase == "load" && x.at >= s.from && x.at <= s.to {
				in = append(in, x)
			}
		}
		s.workers = append(s.workers, workerFigs(name, in, s.from, s.to, s.edge))
	}
	peaks := map[string]*apiPeak{}
	var names []string
	for _, x := range samples {
		switch {
		case strings.HasPrefix(x.proc, "api "):
			p := peaks[x.proc]
			if p == nil {
				p = &apiPeak{name: x.proc}
				peaks[x.proc] = p
				names = append(names, x.proc)
			}
			p.rss, p.heap = max(p.rss, x.rss), max(p.heap, x.heap)
			p.goroutines, p.fds = max(p.goroutines, x.goroutines), max(p.fds, x.fds)
		case x.proc == "redis-server":
			s.redis = append(s.redis, x)
		case x.proc == "postgres" && x.phase == "load":
			s.pgMax = max(s.pgMax, x.serverClients)
		}
	}
	for _, n := range names {
		s.apis = append(s.apis, *peaks[n])
	}
	s.charts = soakCharts(samples, workers, cfg.duration)
	return s
}

func workerFigs(name string, in []soakSample, from, to, edge time.Duration) workerFigures {
	w := workerFigures{name: name, samples: len(in)}
	if len(in) == 0 {
		return w
	}
	if d := in[len(in)-1].at - in[0].at; d > 0 {
		w.cpu = (in[len(in)-1].cpu - in[0].cpu) / d.Seconds()
	}
	var head, end []soakSample
	for _, x := range in {
		if x.at < from+edge {
			head = append(head, x)
		}
		if x.at > to-edge {
			end = append(end, x)
		}
	}
	for _, q := range []struct {
		name string
		f    func(soakSample) float64
	}{
		{"rss", func(x soakSample) float64 { return float64(x.rss) }},
		{"heap", func(x soakSample) float64 { return float64(x.heap) }},
		{"goroutines", func(x soakSample) float64 { return float64(x.goroutines) }},
		{"fds", func(x soakSample) float64 { return float64(x.fds) }},
		{"redis conns", func(x soakSample) float64 { return float64(x.redisConns) }},
	} {
		fg := figure{name: q.name, first: median(head, q.f), last: median(end, q.f), lo: math.Inf(1), hi: math.Inf(-1)}
		for _, x := range in {
			fg.lo, fg.hi = min(fg.lo, q.f(x)), max(fg.hi, q.f(x))
		}
		w.figs = append(w.figs, fg)
	}
	return w
}

// flatFailures is the check of the long run: over the window, the median
// RSS and goroutines of the last edge within soakFlatLimit of the first
// edge's, for every worker.
func (s soakSummary) flatFailures() []string {
	var out []string
	for _, w := range s.workers {
		if w.samples < 10 {
			out = append(out, fmt.Sprintf("%s: %d samples in the window, too few", w.name, w.samples))
			continue
		}
		for _, name := range []string{"rss", "goroutines"} {
			f := w.fig(name)
			if math.Abs(f.change()) > soakFlatLimit {
				out = append(out, fmt.Sprintf("%s: %s moved %+.1f%% over the last %s of the load (median of its first %s %.0f, of its last %s %.0f), more than %.0f%%",
					w.name, name, 100*f.change(), s.to-s.from, s.edge, f.first, s.edge, f.last, 100*soakFlatLimit))
			}
		}
	}
	return out
}

func (s soakSummary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Soak: %s of orders (every %s, a %s api run at a time), the load over after %s.\n",
		s.cfg.duration, s.cfg.orderInterval, s.cfg.batch, s.loadEnd.Round(time.Second))
	fmt.Fprintf(&b, "Workers over the window %s-%s of the load; first and last: medians of its first and last %s.\n\n",
		minutes(s.from), minutes(s.to), s.edge)
	fmt.Fprintf(&b, "%-9s %-11s %10s %10s %8s %10s %10s\n", "process", "figure", "first", "last", "change", "min", "max")
	for _, w := range s.workers {
		for _, f := range w.figs {
			unit := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
			if f.name == "rss" || f.name == "heap" {
				unit = func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
			}
			fmt.Fprintf(&b, "%-9s %-11s %10s %10s %+7.1f%% %10s %10s\n", w.name, f.name, unit(f.first), unit(f.last), 100*f.change(), unit(f.lo), unit(f.hi))
		}
		fmt.Fprintf(&b, "%-9s %-11s %10.0f%% of a core, %d samples\n", w.name, "cpu", 100*w.cpu, w.samples)
	}
	if len(s.apis) > 0 {
		var rss, heap, gr []float64
		for _, a := range s.apis {
			rss, heap, gr = append(rss, mb(a.rss)), append(heap, mb(a.heap)), append(gr, float64(a.goroutines))
		}
		fmt.Fprintf(&b, "\n%d api runs, each one's peak: RSS %s MiB, heap %s MiB, goroutines %s (first, last; min-max)\n",
			len(s.apis), spread(rss, "%.1f"), spread(heap, "%.1f"), spread(gr, "%.0f"))
		fmt.Fprintf(&b, "PostgreSQL backends of the api runs: at most %d\n", s.pgMax)
	}
	if len(s.redis) > 0 {
		first, last := s.redis[0], s.redis[len(s.redis)-1]
		fmt.Fprintf(&b, "redis-server (it keeps every stream entry and saga of the run): RSS %.1f MiB at the start, %.1f MiB at the end; %d clients at the end\n",
			mb(first.rss), mb(last.rss), last.serverClients)
	}
	b.WriteString("\n" + s.charts)
	return b.String()
}

// spread is "first, last; min-max" of v.
func spread(v []float64, format string) string {
	f := func(x float64) string { return fmt.Sprintf(format, x) }
	return fmt.Sprintf("%s, %s; %s-%s", f(v[0]), f(v[len(v)-1]), f(slices.Min(v)), f(slices.Max(v)))
}

func minutes(d time.Duration) string { return d.Round(time.Second).String() }

// soakCharts draws RSS, heap and goroutines of the workers over the run.
func soakCharts(samples []soakSample, workers []string, d time.Duration) string {
	var b strings.Builder
	for _, c := range []struct {
		title   string
		f       func(soakSample) float64
		minStep float64
	}{
		{"RSS (MiB)", func(x soakSample) float64 { return mb(x.rss) }, 0},
		{"heap, go_memstats_heap_alloc_bytes (MiB)", func(x soakSample) float64 { return mb(x.heap) }, 0},
		{"goroutines", func(x soakSample) float64 { return float64(x.goroutines) }, 1},
	} {
		var series []chartSeries
		for i, name := range workers {
			cs := chartSeries{name: name, glyph: rune('1' + i)}
			for _, x := range samples {
				if x.proc == name && x.at >= 0 {
					cs.points = append(cs.points, chartPoint{x: x.at.Minutes(), y: c.f(x)})
				}
			}
			series = append(series, cs)
		}
		b.WriteString(asciiChart(c.title, series, 64, 12, d.Minutes(), c.minStep))
		b.WriteString("\n")
	}
	return b.String()
}

type chartPoint struct{ x, y float64 }

type chartSeries struct {
	name   string
	glyph  rune
	points []chartPoint
}

// asciiChart plots the series on width columns and height rows, the x
// axis in minutes with a mark at loadEnd, the y axis zoomed to the data
// (its first label is where it starts); where two series share a cell it
// shows '*'.
func asciiChart(title string, series []chartSeries, width, height int, loadEnd, minStep float64) string {
	xmax, ymin, ymax := 0.0, math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s.points {
			xmax, ymin, ymax = max(xmax, p.x), min(ymin, p.y), max(ymax, p.y)
		}
	}
	if xmax == 0 || math.IsInf(ymin, 0) {
		return title + ": no samples\n"
	}
	lo, step := chartScale(ymin, ymax, height, minStep)
	grid := make([][]rune, height)
	for i := range grid {
		grid[i] = []rune(strings.Repeat(" ", width))
	}
	for _, s := range series {
		for _, p := range s.points {
			col := min(width-1, int(p.x/xmax*float64(width-1)+0.5))
			row := min(height-1, max(0, int((p.y-lo)/step)))
			r := &grid[height-1-row][col]
			switch *r {
			case ' ', s.glyph:
				*r = s.glyph
			default:
				*r = '*'
			}
		}
	}
	var b strings.Builder
	var legend []string
	for _, s := range series {
		legend = append(legend, fmt.Sprintf("%c %s", s.glyph, s.name))
	}
	fmt.Fprintf(&b, "%s  [%s]\n", title, strings.Join(legend, ", "))
	for i, row := range grid {
		label := "" // a row holds the values from its label up to the next one's
		if (height-1-i)%2 == 0 {
			label = strconv.FormatFloat(lo+step*float64(height-1-i), 'g', 4, 64)
		}
		fmt.Fprintf(&b, "%8s |%s\n", label, string(row))
	}
	axis := []rune(strings.Repeat("-", width))
	if loadEnd > 0 && loadEnd < xmax {
		axis[int(loadEnd/xmax*float64(width-1)+0.5)] = '|'
	}
	fmt.Fprintf(&b, "%8s +%s\n", "", string(axis))
	foot := []rune(strings.Repeat(" ", width+10))
	for _, frac := range []float64{0, 0.25, 0.5, 0.75, 1} {
		text := strconv.FormatFloat(frac*xmax, 'f', 1, 64)
		at := 10 + int(frac*float64(width-1))
		at = min(at, len(foot)-len(text))
		copy(foot[at:], []rune(text))
	}
	fmt.Fprintf(&b, "%s min (| the end of the load)\n", strings.TrimRight(string(foot), " "))
	return b.String()
}

// chartScale picks the bottom of the y axis and the height of a row: a
// round step (1, 2 or 5 times a power of ten, at least minStep) such that
// height rows from a multiple of it hold [ymin, ymax].
func chartScale(ymin, ymax float64, height int, minStep float64) (lo, step float64) {
	span := ymax - ymin
	if span <= 0 {
		span = max(math.Abs(ymax)/10, 1)
	}
	step = max(niceCeil(span/float64(height-1)), minStep)
	for {
		lo = math.Floor(ymin/step) * step
		if lo+step*float64(height) > ymax {
			return lo, step
		}
		step = niceCeil(step * 1.5)
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// writeSoakCSV writes every sample to path.
func writeSoakCSV(path string, samples []soakSample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"seconds", "phase", "process", "pid", "rss_bytes", "heap_alloc_bytes", "goroutines", "fds", "sockets",
		"redis_conns", "postgres_conns", "other_sockets", "cpu_seconds", "server_clients"})
	for _, s := range samples {
		_ = w.Write([]string{strconv.FormatFloat(s.at.Seconds(), 'f', 1, 64), s.phase, s.proc, strconv.Itoa(s.pid),
			strconv.FormatInt(s.rss, 10), strconv.FormatInt(s.heap, 10), strconv.Itoa(s.goroutines), strconv.Itoa(s.fds),
			strconv.Itoa(s.sockets), strconv.Itoa(s.redisConns), strconv.Itoa(s.pgConns), strconv.Itoa(s.otherSockets),
			strconv.FormatFloat(s.cpu, 'f', 2, 64), strconv.Itoa(s.serverClients)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// TestSoakFigures: the flatness check and the chart on made-up samples.
func TestSoakFigures(t *testing.T) {
	cfg := soakConfig{duration: 30 * time.Minute, interval: 10 * time.Second, orderInterval: 250 * time.Millisecond, batch: 30 * time.Second}
	var samples []soakSample
	for at := time.Duration(0); at <= cfg.duration; at += cfg.interval {
		grow := float64(at) / float64(cfg.duration) // 0 to 1
		samples = append(samples,
			soakSample{at: at, phase: "load", proc: "worker 1", rss: 40 << 20, heap: 10 << 20, goroutines: 60 + int(at/time.Minute)%2},
			soakSample{at: at, phase: "load", proc: "worker 2", rss: int64((40 + 20*grow) * (1 << 20)), heap: 10 << 20, goroutines: 60})
	}
	s := summarize(samples, []string{"worker 1", "worker 2"}, cfg.duration, cfg)
	fails := s.flatFailures()
	if len(fails) != 1 || !strings.HasPrefix(fails[0], "worker 2: rss moved +") {
		t.Errorf("flatness failures %q, want worker 2's RSS only", fails)
	}
	// worker 2 over 10-30 min: the median of 10-12 min is ~47 MiB, of
	// 28-30 min ~59 MiB.
	if f := s.workers[1].fig("rss"); f.change() < 0.2 || f.change() > 0.3 {
		t.Errorf("worker 2's RSS change %.3f, want about 0.25", f.change())
	}
	if !strings.Contains(s.String(), "RSS (MiB)  [1 worker 1, 2 worker 2]") {
		t.Errorf("no RSS chart in:\n%s", s)
	}
	if lo, hi := s.workers[0].fig("goroutines").lo, s.workers[0].fig("goroutines").hi; lo != 60 || hi != 61 {
		t.Errorf("worker 1's goroutines %v-%v, want 60-61", lo, hi)
	}
	t.Log("\n" + s.String())
}
