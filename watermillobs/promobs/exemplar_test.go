package promobs_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// manualClock is a clock that moves only when told.
type manualClock struct{ t time.Time }

func (c *manualClock) now() time.Time { return c.t }

// tracedContext returns a context with a sampled remote span of trace id
// {n, n, ...}.
func tracedContext(n byte) (context.Context, string) {
	var tid trace.TraceID
	for i := range tid {
		tid[i] = n
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	return trace.ContextWithSpanContext(context.Background(), sc), tid.String()
}

// bucketExemplar returns the trace_id of the exemplar of the bucket of
// histogram name whose upper bound is le, or "".
func bucketExemplar(t *testing.T, g prometheus.Gatherer, name string, le float64) string {
	t.Helper()
	for _, b := range find(t, g, name).GetHistogram().GetBucket() {
		if b.GetUpperBound() == le {
			return exemplarTraceID(t, b.GetExemplar().GetLabel())
		}
	}
	t.Fatalf("%s has no bucket le=%v", name, le)
	return ""
}

func counterExemplar(t *testing.T, g prometheus.Gatherer, name string) string {
	t.Helper()
	return exemplarTraceID(t, find(t, g, name).GetCounter().GetExemplar().GetLabel())
}

// With an interval, a series takes a new exemplar at most once per
// interval, and each bucket of a histogram has its own interval, so that a
// slow outlier gets its exemplar while the busy bucket is held.
func TestExemplarInterval(t *testing.T) {
	t.Parallel()
	clock := &manualClock{t: time.Unix(1_700_000_000, 0)}
	m, reg := newMetrics(t, promobs.WithExemplarInterval(10*time.Second), promobs.WithClock(clock.now))
	handle := func(trace byte, took time.Duration) string {
		t.Helper()
		ctx, tid := tracedContext(trace)
		msg := newMessage("name", "OrderPlaced")
		msg.SetContext(ctx)
		h := m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) {
			clock.t = clock.t.Add(took)
			return nil, nil
		})
		if _, err := h(msg); err != nil {
			t.Fatal(err)
		}
		return tid
	}
	const duration, total = "cqrs_message_duration_seconds", "cqrs_message_total"

	a := handle(1, time.Millisecond)
	clock.t = clock.t.Add(100 * time.Millisecond)
	handle(2, time.Millisecond)
	if got := counterExemplar(t, reg, total); got != a {
		t.Errorf("within the interval: counter exemplar = %q, want the first message's %q", got, a)
	}
	if got := bucketExemplar(t, reg, duration, 0.005); got != a {
		t.Errorf("within the interval: bucket 0.005 exemplar = %q, want the first message's %q", got, a)
	}

	slow := handle(3, 2*time.Second)
	if got := bucketExemplar(t, reg, duration, 2.5); got != slow {
		t.Errorf("slow message: bucket 2.5 exemplar = %q, want %q", got, slow)
	}
	if got := bucketExemplar(t, reg, duration, 0.005); got != a {
		t.Errorf("after the slow message: bucket 0.005 exemplar = %q, want still %q", got, a)
	}

	clock.t = clock.t.Add(10 * time.Second)
	d := handle(4, time.Millisecond)
	if got := counterExemplar(t, reg, total); got != d {
		t.Errorf("after the interval: counter exemplar = %q, want %q", got, d)
	}
	if got := bucketExemplar(t, reg, duration, 0.005); got != d {
		t.Errorf("after the interval: bucket 0.005 exemplar = %q, want %q", got, d)
	}

	// A wall clock stepped back does not hold exemplars until it catches up.
	clock.t = clock.t.Add(-time.Hour)
	e := handle(5, time.Millisecond)
	if got := counterExemplar(t, reg, total); got != e {
		t.Errorf("after the clock went back: counter exemplar = %q, want %q", got, e)
	}
}

func TestExemplarInterval_negative_gives_every_observation_one(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t, promobs.WithExemplarInterval(-1))
	pub := m.DecoratePublisher(&fakePublisher{})
	for _, n := range []byte{1, 2} {
		ctx, tid := tracedContext(n)
		msg := newMessage()
		msg.SetContext(ctx)
		if _, err := m.HandlerMiddleware()(noop)(msg); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish("orders", msg); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"cqrs_message_total", "watermill_messages_consumed_total", "watermill_messages_published_total"} {
			if got := counterExemplar(t, reg, name); got != tid {
				t.Errorf("message %d: %s exemplar = %q, want %q", n, name, got, tid)
			}
		}
	}
}

// Without the option the default interval applies: two messages in a row
// leave the first one's exemplar.
func TestExemplarInterval_default(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t, promobs.WithClock(func() time.Time { return time.Unix(1_700_000_000, 0) }))
	pub := m.DecoratePublisher(&fakePublisher{})
	var first string
	for _, n := range []byte{1, 2} {
		ctx, tid := tracedContext(n)
		if first == "" {
			first = tid
		}
		msg := newMessage()
		msg.SetContext(ctx)
		if err := pub.Publish("orders", msg); err != nil {
			t.Fatal(err)
		}
	}
	if got := counterExemplar(t, reg, "watermill_messages_published_total"); got != first {
		t.Errorf("published exemplar = %q, want the first message's %q", got, first)
	}
	if got := bucketExemplar(t, reg, "watermill_publish_duration_seconds", 0.005); got != first {
		t.Errorf("publish duration exemplar = %q, want the first message's %q", got, first)
	}
}

func TestOutboxMetrics_ExemplarInterval(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		interval time.Duration
		want     int // index of the forward whose trace the counter shows
	}{
		{"held", time.Hour, 0},
		{"every observation", -1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			m, err := promobs.NewOutboxMetrics(reg, promobs.OutboxMetricsConfig{ExemplarInterval: tt.interval})
			if err != nil {
				t.Fatal(err)
			}
			hr := hooks.NewRegistry()
			if _, err := m.Register(hr); err != nil {
				t.Fatal(err)
			}
			var tids []string
			for _, n := range []byte{1, 2} {
				ctx, tid := tracedContext(n)
				tids = append(tids, tid)
				attrs := []slog.Attr{slog.String("topic", "orders"), slog.Duration("outbox.time_in_outbox", time.Second)}
				if err := hr.Run(ctx, "outbox.forward.orders", attrs, func(context.Context) error { return nil }); err != nil {
					t.Fatal(err)
				}
			}
			want := tids[tt.want]
			if got := counterExemplar(t, reg, "outbox_messages_forwarded_total"); got != want {
				t.Errorf("forwarded exemplar = %q, want %q", got, want)
			}
			if got := bucketExemplar(t, reg, "outbox_time_in_outbox_seconds", 1); got != want {
				t.Errorf("time in outbox exemplar = %q, want %q", got, want)
			}
			if got := value(t, reg, "outbox_messages_forwarded_total", "outcome", "success"); got != 2 {
				t.Errorf("forwarded = %v, want 2", got)
			}
		})
	}
}

// Goroutines racing for the same gates count every message, and the
// series end with an exemplar of one of them (run with -race).
func TestExemplarInterval_concurrent(t *testing.T) {
	t.Parallel()
	const goroutines, each = 8, 200
	m, reg := newMetrics(t, promobs.WithExemplarInterval(time.Microsecond))
	h := m.HandlerMiddleware()(noop)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			pub := m.DecoratePublisher(&fakePublisher{}) // the fake is not safe for concurrent use
			for range each {
				ctx, _ := tracedContext(byte(1 + g))
				msg := newMessage("name", "OrderPlaced")
				msg.SetContext(ctx)
				_, _ = h(msg)
				_ = pub.Publish("orders", msg)
			}
		})
	}
	wg.Wait()
	for _, name := range []string{"cqrs_message_total", "watermill_messages_published_total"} {
		if got := value(t, reg, name); got != goroutines*each {
			t.Errorf("%s = %v, want %d", name, got, goroutines*each)
		}
		if got := counterExemplar(t, reg, name); len(got) != 32 {
			t.Errorf("%s exemplar trace_id = %q, want one of the messages' trace IDs", name, got)
		}
	}
}
