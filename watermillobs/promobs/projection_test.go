package promobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/projections"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// projectionFixture is a projection over an in-memory log whose worker's
// operations reach a projection hook on a private Prometheus registry.
type projectionFixture struct {
	log    *projections.MemoryLog
	worker *projections.Worker
	prom   *prometheus.Registry
}

// newProjectionFixture builds a projection that adds payloads per
// "account" and fails every attempt on payload "bad".
func newProjectionFixture(t *testing.T, cfg projections.Config, opts ...promobs.ProjectionOption) *projectionFixture {
	t.Helper()
	prom := prometheus.NewPedanticRegistry()
	hook, err := promobs.NewProjectionHook(prom, opts...)
	if err != nil {
		t.Fatal(err)
	}
	reg := hooks.NewRegistry()
	reg.MustRegister(hook, hooks.WithOperations(promobs.ProjectionOperations()...))
	log := projections.NewMemoryLog()
	cfg.Projection = projections.NewProjection("totals", func(_ context.Context, ev projections.Event, b *projections.Batch) error {
		n, err := strconv.ParseInt(string(ev.Payload), 10, 64)
		if err != nil {
			return errors.New("bad amount")
		}
		b.Incr("totals", ev.Metadata.Get("account"), n)
		return nil
	})
	cfg.Streams = []string{"events"}
	cfg.Source = log
	cfg.Store = projections.NewMemoryStore()
	cfg.Hooks = reg
	cfg.Block = 5 * time.Millisecond
	cfg.Retry = projections.RetryPolicy{Attempts: 2, Initial: time.Millisecond}
	w, err := projections.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &projectionFixture{log: log, worker: w, prom: prom}
}

func (f *projectionFixture) add(payloads ...string) {
	for _, p := range payloads {
		msg := message.NewMessage(watermill.NewUUID(), []byte(p))
		msg.Metadata.Set("account", "a")
		f.log.Append("events", msg)
	}
}

// run runs the worker until it has caught up, and returns Run's error.
func (f *projectionFixture) run(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.worker.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			cancel()
			return err
		default:
		}
		lags, err := f.worker.Lag(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if lags[0].Events == 0 {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		}
		if time.Now().After(deadline) {
			t.Fatal("worker did not catch up")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestProjectionHook_counts_the_worker_operations(t *testing.T) {
	f := newProjectionFixture(t, projections.Config{Poison: projections.PoisonDeadLetter, Gaps: projections.GapContinue})
	f.add("1", "2", "bad", "3")
	if err := f.run(t); err != nil {
		t.Fatal(err)
	}
	// Five more, of which the first three are trimmed before they are applied.
	f.add("4", "5", "6", "7", "8")
	f.log.Trim("events", 2)
	if err := f.run(t); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"projection_events_processed_total", []string{"projection", "totals", "outcome", "success"}, 5},
		{"projection_events_processed_total", []string{"projection", "totals", "outcome", "error"}, 2},
		{"projection_process_duration_seconds", []string{"projection", "totals"}, 7},
		{"projection_events_dead_lettered_total", []string{"projection", "totals"}, 1},
		{"projection_gaps_detected_total", []string{"projection", "totals", "partition", "0"}, 1},
		{"projection_skipped_entries_total", []string{"projection", "totals", "partition", "0"}, 3},
		{"projection_checkpoint_saves_total", []string{"projection", "totals", "outcome", "success"}, -1},
		{"projection_batch_duration_seconds", []string{"projection", "totals"}, -1},
		{"projection_sink_write_duration_seconds", []string{"projection", "totals"}, -1},
	} {
		got := value(t, f.prom, c.name, c.labels...)
		if c.want < 0 && got < 1 || c.want >= 0 && got != c.want {
			t.Errorf("%s%v = %v, want %v (-1: at least 1)", c.name, c.labels, got, c.want)
		}
	}
	if problems, err := testutil.GatherAndLint(f.prom); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

func TestProjectionHook_counts_policy_stops(t *testing.T) {
	f := newProjectionFixture(t, projections.Config{})
	f.add("1", "bad", "2")
	var poison *projections.PoisonError
	if err := f.run(t); !errors.As(err, &poison) {
		t.Fatalf("Run = %v, want a PoisonError", err)
	}
	if got := value(t, f.prom, "projection_stops_total", "projection", "totals", "reason", "poison"); got != 1 {
		t.Fatalf("projection_stops_total{reason=poison} = %v, want 1", got)
	}
}

func TestProjectionHook_caps_projection_labels(t *testing.T) {
	prom := prometheus.NewPedanticRegistry()
	hook, err := promobs.NewProjectionHook(prom, promobs.WithMaxProjections(1), promobs.WithNamespace("shop").(promobs.ProjectionOption))
	if err != nil {
		t.Fatal(err)
	}
	reg := hooks.NewRegistry()
	reg.MustRegister(hook)
	for _, name := range []string{"first", "second", "third"} {
		_ = reg.Run(context.Background(), "projection.process."+name, nil, func(context.Context) error { return nil })
	}
	if got := value(t, prom, "shop_projection_events_processed_total", "projection", "first"); got != 1 {
		t.Fatalf("first = %v, want 1", got)
	}
	if got := value(t, prom, "shop_projection_events_processed_total", "projection", "other"); got != 2 {
		t.Fatalf("other = %v, want 2", got)
	}
	// A second hook on the same registry counts into the same metrics.
	if _, err := promobs.NewProjectionHook(prom); err != nil {
		t.Fatalf("second NewProjectionHook on one registry: %v", err)
	}
	if _, err := promobs.NewProjectionHook(nil); !errors.Is(err, promobs.ErrNilRegisterer) {
		t.Fatalf("nil registerer: %v", err)
	}
}

// lagSource is a ProjectionSource with fixed rows, or an error, or a panic.
type lagSource struct {
	rows   [][3]float64 // partition, events, seconds
	err    error
	panic  bool
	replay [2]int64 // done, total; none when total is 0
}

func (s lagSource) ReplayStatus(_ context.Context, fn func(string, int64, int64)) error {
	if s.replay[1] > 0 {
		fn("orders", s.replay[0], s.replay[1])
	}
	return nil
}

func (s lagSource) ProjectionLag(_ context.Context, fn func(string, int, int64, float64)) error {
	if s.panic {
		panic("broken source")
	}
	for _, r := range s.rows {
		fn("orders", int(r[0]), int64(r[1]), r[2])
	}
	return s.err
}

func TestProjectionCollector_exports_lag(t *testing.T) {
	f := newProjectionFixture(t, projections.Config{})
	f.add("1", "2", "3", "4")
	c, err := promobs.NewProjectionCollector([]promobs.ProjectionSource{f.worker, lagSource{rows: [][3]float64{{0, 7, 1.5}, {1, 0, 0}}, replay: [2]int64{25, 100}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP projection_lag_events Stream entries after the partition's checkpoint not yet applied, read at scrape time, by projection and partition.
# TYPE projection_lag_events gauge
projection_lag_events{partition="0",projection="orders"} 7
projection_lag_events{partition="0",projection="totals"} 4
projection_lag_events{partition="1",projection="orders"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "projection_lag_events"); err != nil {
		t.Fatal(err)
	}
	if err := f.run(t); err != nil {
		t.Fatal(err)
	}
	want = `
# HELP projection_lag_seconds Age by the Redis clock of the oldest entry the partition has not applied; 0 when caught up, by projection and partition.
# TYPE projection_lag_seconds gauge
projection_lag_seconds{partition="0",projection="orders"} 1.5
projection_lag_seconds{partition="0",projection="totals"} 0
projection_lag_seconds{partition="1",projection="orders"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "projection_lag_seconds"); err != nil {
		t.Fatal(err)
	}
	want = `
# HELP projection_replay_progress_ratio Progress of a running replay, entries rebuilt over entries in the streams (0 to 1), by projection; absent when none runs.
# TYPE projection_replay_progress_ratio gauge
projection_replay_progress_ratio{projection="orders"} 0.25
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "projection_replay_progress_ratio"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

func TestProjectionCollector_failing_sources_leave_only_their_gauges_out(t *testing.T) {
	good := lagSource{rows: [][3]float64{{0, 3, 0}}}
	c, err := promobs.NewProjectionCollector([]promobs.ProjectionSource{good, lagSource{err: errors.New("redis down")}, lagSource{panic: true}},
		promobs.WithLogger(slog.New(slog.DiscardHandler)).(promobs.ProjectionOption))
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP projection_lag_collect_errors_total Scrapes that could not read the lag of a projection (error, timeout, panic) and left its gauges out.
# TYPE projection_lag_collect_errors_total counter
projection_lag_collect_errors_total 2
# HELP projection_lag_events Stream entries after the partition's checkpoint not yet applied, read at scrape time, by projection and partition.
# TYPE projection_lag_events gauge
projection_lag_events{partition="0",projection="orders"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "projection_lag_events", "projection_lag_collect_errors_total"); err != nil {
		t.Fatal(err)
	}
	if _, err := promobs.NewProjectionCollector(nil); !errors.Is(err, promobs.ErrNoProjectionSource) {
		t.Fatalf("no sources: %v", err)
	}
}

// The projection workers feed the collector as they are.
var (
	_ promobs.ProjectionSource = (*projections.Worker)(nil)
	_ promobs.ReplaySource     = (*projections.Worker)(nil)
)
