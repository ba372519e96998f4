package promobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

func newOutboxMetrics(t *testing.T) (*hooks.Registry, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := promobs.NewOutboxMetrics(reg, promobs.OutboxMetricsConfig{})
	if err != nil {
		t.Fatalf("NewOutboxMetrics: %v", err)
	}
	hr := hooks.NewRegistry()
	if _, err := m.Register(hr); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return hr, reg
}

func run(t *testing.T, hr *hooks.Registry, name string, err error, attrs ...slog.Attr) {
	t.Helper()
	got := hr.Run(context.Background(), name, attrs, func(context.Context) error { return err })
	if !errors.Is(got, err) && !(err == nil && got == nil) {
		t.Fatalf("Run(%s) = %v, want %v", name, got, err)
	}
}

func TestOutboxMetrics_reads_the_outbox_operations(t *testing.T) {
	t.Parallel()
	hr, reg := newOutboxMetrics(t)
	boom := errors.New("broker down")

	run(t, hr, "outbox.save_events", nil, slog.String("topic", "orders"), slog.Int("outbox.event_count", 3))
	run(t, hr, "outbox.save_events", boom, slog.String("topic", "orders"), slog.Int("outbox.event_count", 2))
	run(t, hr, "outbox.forward.orders", nil, slog.String("topic", "orders"), slog.Duration("outbox.time_in_outbox", 2*time.Second))
	run(t, hr, "outbox.forward.orders", boom, slog.String("topic", "orders"), slog.Duration("outbox.time_in_outbox", 3*time.Second))
	run(t, hr, "outbox.process_batch", nil, slog.Int("outbox.batch_size", 7))
	run(t, hr, "outbox.retry_failed", boom, slog.Int("outbox.retry.batch_size", 1))
	run(t, hr, "outbox.retry_failed", nil, slog.Int("outbox.retry.batch_size", 1))
	run(t, hr, "outbox.dead_letter", nil)
	run(t, hr, "outbox.buffered.publish", nil, slog.String("topic", "orders"), slog.Int("outbox.event_count", 1))

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"outbox_messages_saved_total", []string{"topic", "orders", "outcome", "success"}, 3},
		{"outbox_messages_saved_total", []string{"topic", "orders", "outcome", "error"}, 2},
		{"outbox_messages_forwarded_total", []string{"topic", "orders", "outcome", "success"}, 1},
		{"outbox_messages_forwarded_total", []string{"topic", "orders", "outcome", "error"}, 1},
		{"outbox_forward_duration_seconds", []string{"topic", "orders"}, 2},
		// Only successful forwards: a failed one has not left the outbox.
		{"outbox_time_in_outbox_seconds", []string{"topic", "orders"}, 1},
		{"outbox_batches_total", []string{"outcome", "success"}, 1},
		{"outbox_batch_messages", nil, 1},
		{"outbox_batch_duration_seconds", nil, 1},
		{"outbox_retries_total", []string{"outcome", "error"}, 1},
		{"outbox_retries_total", []string{"outcome", "success"}, 1},
		{"outbox_dead_letters_total", []string{"outcome", "success"}, 1},
		{"outbox_buffered_publishes_total", []string{"outcome", "success"}, 1},
		{"outbox_buffered_publish_duration_seconds", nil, 1},
	} {
		if got := value(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if m := find(t, reg, "outbox_time_in_outbox_seconds"); m.GetHistogram().GetSampleSum() != 2 {
		t.Errorf("time in outbox sum = %v s, want 2", m.GetHistogram().GetSampleSum())
	}
	if m := find(t, reg, "outbox_batch_messages"); m.GetHistogram().GetSampleSum() != 7 {
		t.Errorf("batch size sum = %v, want 7", m.GetHistogram().GetSampleSum())
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestOutboxMetrics_caps_topics_and_shares_a_registry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m1, err := promobs.NewOutboxMetrics(reg, promobs.OutboxMetricsConfig{MaxTopics: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := promobs.NewOutboxMetrics(reg, promobs.OutboxMetricsConfig{}); err != nil {
		t.Fatalf("second NewOutboxMetrics on one registry: %v", err)
	}
	hr := hooks.NewRegistry()
	if _, err := m1.Register(hr); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a", "b", "c", "d"} {
		run(t, hr, "outbox.forward."+topic, nil, slog.String("topic", topic))
	}
	if got := value(t, reg, "outbox_messages_forwarded_total", "topic", "other"); got != 2 {
		t.Errorf("forwards past the topic cap = %v, want 2 under other", got)
	}
	if _, err := promobs.NewOutboxMetrics(nil, promobs.OutboxMetricsConfig{}); !errors.Is(err, promobs.ErrNilRegisterer) {
		t.Errorf("nil registerer: %v", err)
	}
	if _, err := promobs.NewOutboxMetrics(reg, promobs.OutboxMetricsConfig{Namespace: "1x"}); err == nil {
		t.Errorf("bad namespace accepted")
	}
}

// fakeBacklog is an OutboxBacklogSource with settable numbers.
type fakeBacklog struct {
	mu                 sync.Mutex
	messages, heldBack int64
	oldest             time.Time
	err                error
}

func (f *fakeBacklog) OutboxTopic() string { return "outbox" }
func (f *fakeBacklog) OutboxBacklog(context.Context) (int64, int64, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.messages, f.heldBack, f.oldest, f.err
}

func TestOutboxBacklogCollector_gauges_at_scrape_time(t *testing.T) {
	t.Parallel()
	src := &fakeBacklog{messages: 5, heldBack: 2, oldest: time.Now().Add(-90 * time.Second)}
	c, err := promobs.NewOutboxBacklogCollector(promobs.OutboxBacklogConfig{Logger: slog.New(slog.DiscardHandler)}, src)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	gauge := func(name string) (float64, bool) {
		m := find(t, reg, name, "outbox", "outbox")
		if m == nil {
			return 0, false
		}
		return m.GetGauge().GetValue(), true
	}
	if v, _ := gauge("outbox_backlog_messages"); v != 5 {
		t.Errorf("outbox_backlog_messages = %v, want 5", v)
	}
	if v, _ := gauge("outbox_backlog_held_back_messages"); v != 2 {
		t.Errorf("outbox_backlog_held_back_messages = %v, want 2", v)
	}
	if v, _ := gauge("outbox_oldest_message_age_seconds"); v < 89 || v > 120 {
		t.Errorf("outbox_oldest_message_age_seconds = %v, want about 90", v)
	}

	src.mu.Lock()
	src.err = errors.New("connection refused")
	src.mu.Unlock()
	if _, ok := gauge("outbox_backlog_messages"); ok {
		t.Errorf("a failed query still reports a backlog gauge")
	}
	// Two scrapes so far failed: the one above and this one.
	if got := value(t, reg, "outbox_backlog_query_errors_total", "outbox", "outbox"); got != 2 {
		t.Errorf("query errors = %v, want 2", got)
	}

	src.mu.Lock()
	src.err, src.messages, src.heldBack, src.oldest = nil, 0, 0, time.Time{}
	src.mu.Unlock()
	if v, _ := gauge("outbox_oldest_message_age_seconds"); v != 0 {
		t.Errorf("empty outbox: age = %v, want 0", v)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if !strings.Contains(p.Metric, "outbox_") {
			continue
		}
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
