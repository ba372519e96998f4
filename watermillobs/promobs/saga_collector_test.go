package promobs_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// sagaRow is one call of the ActiveSagas callback.
type sagaRow struct {
	typ    string
	count  int64
	oldest time.Time
}

// fakeSagaSource reports rows, or err; block, when set, is waited for (or
// ctx, unless ignoreCtx) before answering.
type fakeSagaSource struct {
	rows      []sagaRow
	err       error
	panicVal  any
	block     chan struct{}
	ignoreCtx bool
	calls     atomic.Int32
}

func (s *fakeSagaSource) ActiveSagas(ctx context.Context, fn func(string, int64, time.Time)) error {
	s.calls.Add(1)
	if s.block != nil {
		if s.ignoreCtx {
			<-s.block
		} else {
			select {
			case <-s.block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if s.panicVal != nil {
		panic(s.panicVal)
	}
	if s.err != nil {
		return s.err
	}
	for _, r := range s.rows {
		fn(r.typ, r.count, r.oldest)
	}
	return nil
}

var scrapeTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newSagaCollector(t testing.TB, src promobs.SagaSource, opts ...promobs.SagaOption) (prometheus.Collector, *prometheus.Registry) {
	t.Helper()
	opts = append([]promobs.SagaOption{promobs.WithClock(func() time.Time { return scrapeTime })}, opts...)
	c, err := promobs.NewSagaCollector(src, opts...)
	if err != nil {
		t.Fatalf("NewSagaCollector: %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return c, reg
}

const collectorHelp = `
# HELP saga_active_collect_errors_total Scrapes that could not read the active saga instances (error, timeout, panic or a read still running) and left the saga gauges out.
# TYPE saga_active_collect_errors_total counter
`

func TestSagaCollector_gauges(t *testing.T) {
	src := &fakeSagaSource{rows: []sagaRow{
		{"OrderSaga", 3, scrapeTime.Add(-90 * time.Second)},
		{"RefundSaga", 0, time.Time{}},
		{"ClockSkewSaga", 1, scrapeTime.Add(time.Minute)}, // started "in the future": age 0
	}}
	c, reg := newSagaCollector(t, src)
	want := collectorHelp + `saga_active_collect_errors_total 0
# HELP saga_active_instances Saga instances that have started and not ended, by saga type, read at scrape time.
# TYPE saga_active_instances gauge
saga_active_instances{saga_type="ClockSkewSaga"} 1
saga_active_instances{saga_type="OrderSaga"} 3
saga_active_instances{saga_type="RefundSaga"} 0
# HELP saga_oldest_active_age_seconds Time since the oldest active saga instance started, by saga type; 0 when none is active.
# TYPE saga_oldest_active_age_seconds gauge
saga_oldest_active_age_seconds{saga_type="ClockSkewSaga"} 0
saga_oldest_active_age_seconds{saga_type="OrderSaga"} 90
saga_oldest_active_age_seconds{saga_type="RefundSaga"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// Types past the cap are summed under "other", with the oldest start of
// them all.
func TestSagaCollector_labelCap(t *testing.T) {
	src := &fakeSagaSource{rows: []sagaRow{
		{"A", 1, scrapeTime.Add(-time.Second)},
		{"B", 2, scrapeTime.Add(-10 * time.Second)},
		{"C", 3, scrapeTime.Add(-30 * time.Second)},
		{"D", 4, time.Time{}},
	}}
	c, _ := newSagaCollector(t, src, promobs.WithMaxSagaTypes(1))
	want := `
# HELP saga_active_instances Saga instances that have started and not ended, by saga type, read at scrape time.
# TYPE saga_active_instances gauge
saga_active_instances{saga_type="A"} 1
saga_active_instances{saga_type="other"} 9
# HELP saga_oldest_active_age_seconds Time since the oldest active saga instance started, by saga type; 0 when none is active.
# TYPE saga_oldest_active_age_seconds gauge
saga_oldest_active_age_seconds{saga_type="A"} 1
saga_oldest_active_age_seconds{saga_type="other"} 30
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "saga_active_instances", "saga_oldest_active_age_seconds"); err != nil {
		t.Error(err)
	}
}

// A failing, panicking or slow source never fails the scrape: the gauges
// are left out, the failure is counted and logged.
func TestSagaCollector_sourceFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  []string // one of them
		src  *fakeSagaSource
	}{
		{"error", []string{"redis down"}, &fakeSagaSource{err: errors.New("redis down")}},
		{"panic", []string{"SagaSource panicked: boom"}, &fakeSagaSource{panicVal: "boom"}},
		// The source's context and the scrape's wait end together: either
		// may report first.
		{"timeout", []string{"context deadline exceeded", "no answer within 50ms"}, &fakeSagaSource{block: make(chan struct{})}},
		{"ignores its context", []string{"no answer within 50ms"}, &fakeSagaSource{block: make(chan struct{}), ignoreCtx: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src.block != nil {
				t.Cleanup(func() { close(tc.src.block) })
			}
			var logs bytes.Buffer
			_, reg := newSagaCollector(t, tc.src,
				promobs.WithCollectTimeout(50*time.Millisecond),
				promobs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			for scrape := 1; scrape <= 3; scrape++ {
				mfs, err := reg.Gather()
				if err != nil {
					t.Fatalf("Gather: %v, want the scrape to succeed without the gauges", err)
				}
				if len(mfs) != 1 || mfs[0].GetName() != "saga_active_collect_errors_total" {
					t.Fatalf("scrape %d gathered %d families, want only saga_active_collect_errors_total", scrape, len(mfs))
				}
				if got := mfs[0].GetMetric()[0].GetCounter().GetValue(); got != float64(scrape) {
					t.Errorf("errors after scrape %d = %v", scrape, got)
				}
			}
			if !slices.ContainsFunc(tc.log, func(want string) bool { return strings.Contains(logs.String(), want) }) {
				t.Errorf("log = %q, want it to contain one of %q", logs.String(), tc.log)
			}
			// Scrapes 1, 2 are logged; 3 is thinned out.
			if n := strings.Count(logs.String(), "\n"); n != 2 {
				t.Errorf("%d log lines for 3 failures in a row, want 2", n)
			}
			if tc.src.ignoreCtx {
				// The source hangs: every scrape waited for the one read.
				if n := tc.src.calls.Load(); n != 1 {
					t.Errorf("source called %d times while hanging, want 1", n)
				}
			}
		})
	}
}

// The source recovers: the gauges come back and the error count stays.
func TestSagaCollector_recovers(t *testing.T) {
	src := &fakeSagaSource{err: errors.New("redis down")}
	c, _ := newSagaCollector(t, src, promobs.WithLogger(slog.New(slog.DiscardHandler)))
	if n := testutil.CollectAndCount(c, "saga_active_instances"); n != 0 {
		t.Fatalf("%d active series while failing, want 0", n)
	}
	src.err = nil
	src.rows = []sagaRow{{"OrderSaga", 2, scrapeTime.Add(-time.Second)}}
	want := collectorHelp + `saga_active_collect_errors_total 1
# HELP saga_active_instances Saga instances that have started and not ended, by saga type, read at scrape time.
# TYPE saga_active_instances gauge
saga_active_instances{saga_type="OrderSaga"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "saga_active_instances", "saga_active_collect_errors_total"); err != nil {
		t.Error(err)
	}
}

func TestNewSagaCollector_errors(t *testing.T) {
	if _, err := promobs.NewSagaCollector(nil); !errors.Is(err, promobs.ErrNilSagaSource) {
		t.Errorf("nil source: err = %v, want ErrNilSagaSource", err)
	}
	if _, err := promobs.NewSagaCollector(&fakeSagaSource{}, promobs.WithNamespace("bad-ns")); err == nil {
		t.Error("bad namespace: no error")
	}
	c, err := promobs.NewSagaCollector(&fakeSagaSource{rows: []sagaRow{{"S", 1, time.Time{}}}}, promobs.WithNamespace("shop"))
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "shop_saga_active_instances"); n != 1 {
		t.Errorf("%d shop_saga_active_instances series, want 1", n)
	}
	// Next to New and NewSagaHook on one registry: no name clashes.
	reg := prometheus.NewPedanticRegistry()
	if _, err := promobs.New(reg, promobs.WithNamespace("shop")); err != nil {
		t.Fatal(err)
	}
	if _, err := promobs.NewSagaHook(reg, promobs.WithNamespace("shop")); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(c); err != nil {
		t.Errorf("Register next to New and NewSagaHook: %v", err)
	}
}
