package promobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

func TestHandlerMiddleware_counts(t *testing.T) {
	errHandler := errors.New("handler failed")
	tests := []struct {
		name        string
		metadata    []string
		err         error
		wantKind    string
		wantType    string
		wantOutcome string
	}{
		{"command success", []string{"name", "PlaceOrder", "message_kind", "command"}, nil, "command", "PlaceOrder", "success"},
		{"event error", []string{"name", "OrderPlaced", "message_kind", "event"}, errHandler, "event", "OrderPlaced", "error"},
		{"query", []string{"name", "GetOrder", "message_kind", "query"}, nil, "query", "GetOrder", "success"},
		{"reply", []string{"name", "OrderView", "message_kind", "reply"}, nil, "reply", "OrderView", "success"},
		{"unknown kind falls back", []string{"name", "X", "message_kind", "gossip"}, nil, "message", "X", "success"},
		{"no metadata", nil, nil, "message", "unknown", "success"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newMetrics(t)
			h := m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { return nil, tt.err })
			for range 3 {
				if _, err := h(newMessage(tt.metadata...)); !errors.Is(err, tt.err) {
					t.Fatalf("handler returned %v, want %v", err, tt.err)
				}
			}
			labels := []string{"kind", tt.wantKind, "message_type", tt.wantType, "outcome", tt.wantOutcome}
			if got := value(t, reg, "cqrs_message_total", labels...); got != 3 {
				t.Errorf("cqrs_message_total%v = %v, want 3", labels, got)
			}
			if got := value(t, reg, "cqrs_message_duration_seconds", labels...); got != 3 {
				t.Errorf("cqrs_message_duration_seconds%v count = %v, want 3", labels, got)
			}
			if got := value(t, reg, "watermill_messages_consumed_total", "topic", "unknown", "handler", "unknown", "outcome", tt.wantOutcome); got != 3 {
				t.Errorf("watermill_messages_consumed_total = %v, want 3", got)
			}
			if n, err := testutil.GatherAndCount(reg, "cqrs_message_total"); err != nil || n != 1 {
				t.Errorf("cqrs_message_total has %d series (err %v), want 1", n, err)
			}
		})
	}
}

func TestHandlerMiddleware_exposition(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m, reg := newMetrics(t,
		promobs.WithClock(stepClock(start, 30*time.Millisecond)),
		promobs.WithBuckets([]float64{0.01, 0.1, 1}),
		promobs.WithTimeInQueueBuckets([]float64{1, 10}),
	)
	h := m.HandlerMiddleware()(noop)
	msg := newMessage("name", "OrderPlaced", "message_kind", "event",
		"published_at", start.Add(-2*time.Second).Format(time.RFC3339Nano))
	if _, err := h(msg); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP cqrs_message_duration_seconds Time taken by a Watermill handler to handle a message, by message kind, type and outcome.
# TYPE cqrs_message_duration_seconds histogram
cqrs_message_duration_seconds_bucket{kind="event",message_type="OrderPlaced",outcome="success",le="0.01"} 0
cqrs_message_duration_seconds_bucket{kind="event",message_type="OrderPlaced",outcome="success",le="0.1"} 1
cqrs_message_duration_seconds_bucket{kind="event",message_type="OrderPlaced",outcome="success",le="1"} 1
cqrs_message_duration_seconds_bucket{kind="event",message_type="OrderPlaced",outcome="success",le="+Inf"} 1
cqrs_message_duration_seconds_sum{kind="event",message_type="OrderPlaced",outcome="success"} 0.03
cqrs_message_duration_seconds_count{kind="event",message_type="OrderPlaced",outcome="success"} 1
# HELP cqrs_message_total Messages handled by Watermill handlers, by message kind, type and outcome.
# TYPE cqrs_message_total counter
cqrs_message_total{kind="event",message_type="OrderPlaced",outcome="success"} 1
# HELP promobs_internal_errors_total Panics recovered inside promobs while observing; the messages concerned were processed without metrics.
# TYPE promobs_internal_errors_total counter
promobs_internal_errors_total 0
# HELP watermill_message_time_in_queue_seconds Time from a message's published_at metadata to the start of its handling, by subscribed topic.
# TYPE watermill_message_time_in_queue_seconds histogram
watermill_message_time_in_queue_seconds_bucket{topic="unknown",le="1"} 0
watermill_message_time_in_queue_seconds_bucket{topic="unknown",le="10"} 1
watermill_message_time_in_queue_seconds_bucket{topic="unknown",le="+Inf"} 1
watermill_message_time_in_queue_seconds_sum{topic="unknown"} 2
watermill_message_time_in_queue_seconds_count{topic="unknown"} 1
# HELP watermill_messages_consumed_total Messages handled by Watermill handlers, by subscribed topic, handler and outcome.
# TYPE watermill_messages_consumed_total counter
watermill_messages_consumed_total{handler="unknown",outcome="success",topic="unknown"} 1
`
	// The recovered-panics counter is process-wide; TestRecoveredPanics_exported checks it.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cqrs_message_duration_seconds", "cqrs_message_total",
		"promobs_internal_errors_total", "watermill_message_time_in_queue_seconds", "watermill_messages_consumed_total"); err != nil {
		t.Error(err)
	}
}

func TestHandlerMiddleware_panic(t *testing.T) {
	m, reg := newMetrics(t)
	panicValue := &struct{ reason string }{"boom"}
	h := m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { panic(panicValue) })

	got := func() (v any) {
		defer func() { v = recover() }()
		_, _ = h(newMessage("name", "PlaceOrder", "message_kind", "command"))
		return nil
	}()
	if got != any(panicValue) {
		t.Fatalf("recovered %v, want the handler's own panic value", got)
	}
	if v := value(t, reg, "cqrs_message_total", "kind", "command", "message_type", "PlaceOrder", "outcome", "error"); v != 1 {
		t.Errorf("cqrs_message_total{outcome=error} = %v, want 1", v)
	}
	if v := value(t, reg, "cqrs_message_total", "outcome", "success"); v != 0 {
		t.Errorf("cqrs_message_total{outcome=success} = %v, want 0", v)
	}
}

func TestHandlerMiddleware_own_panic_does_not_fail_message(t *testing.T) {
	var logs bytes.Buffer
	m, reg := newMetrics(t,
		promobs.WithObserveHook(func() { panic("bug in promobs") }),
		promobs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
	)

	produced := []*message.Message{newMessage()}
	errHandler := errors.New("handler failed")
	h := m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { return produced, errHandler })
	msgs, err := h(newMessage())
	if len(msgs) != 1 || msgs[0] != produced[0] || err != errHandler {
		t.Errorf("handler returned (%v, %v), want its own results", msgs, err)
	}

	// The user's panic wins over ours.
	h = m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { panic("user panic") })
	got := func() (v any) {
		defer func() { v = recover() }()
		_, _ = h(newMessage())
		return nil
	}()
	if got != "user panic" {
		t.Errorf("recovered %v, want the handler's panic", got)
	}

	if v := value(t, reg, "promobs_internal_errors_total"); v != 2 {
		t.Errorf("promobs_internal_errors_total = %v, want 2", v)
	}
	var rec struct {
		Level string `json:"level"`
		Panic string `json:"panic"`
		Stack string `json:"stack"`
	}
	line, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if rec.Level != "ERROR" || rec.Panic != "bug in promobs" || rec.Stack == "" {
		t.Errorf("log record = %+v, want an ERROR with the panic and a stack", rec)
	}
}

func TestHandlerMiddleware_counts_once(t *testing.T) {
	tests := []struct {
		name  string
		wrap  func(m1, m2 *promobs.Metrics, h message.HandlerFunc) message.HandlerFunc
		calls int
	}{
		{"same Metrics twice", func(m1, _ *promobs.Metrics, h message.HandlerFunc) message.HandlerFunc {
			return m1.HandlerMiddleware()(m1.HandlerMiddleware()(h))
		}, 1},
		{"two Metrics on one registry", func(m1, m2 *promobs.Metrics, h message.HandlerFunc) message.HandlerFunc {
			return m1.HandlerMiddleware()(m2.HandlerMiddleware()(h))
		}, 1},
		{"retry outside counts each attempt", func(m1, _ *promobs.Metrics, h message.HandlerFunc) message.HandlerFunc {
			inner := m1.HandlerMiddleware()(h)
			return func(msg *message.Message) ([]*message.Message, error) {
				_, _ = inner(msg)
				return inner(msg)
			}
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m1, reg := newMetrics(t)
			m2, err := promobs.New(reg)
			if err != nil {
				t.Fatal(err)
			}
			h := tt.wrap(m1, m2, noop)
			msg := newMessage("published_at", time.Now().Add(-time.Second).Format(time.RFC3339Nano))
			if _, err := h(msg); err != nil {
				t.Fatal(err)
			}
			if v := value(t, reg, "cqrs_message_total"); v != float64(tt.calls) {
				t.Errorf("cqrs_message_total = %v, want %d", v, tt.calls)
			}
			if v := value(t, reg, "watermill_message_time_in_queue_seconds"); v != 1 {
				t.Errorf("time in queue observed %v times, want once", v)
			}
		})
	}
}

// A handler publishing through a cqrs bus passes its context on to the new
// message; when that message is handled in the same process, it must be
// counted even though its context carries the first message's marker.
func TestHandlerMiddleware_context_passed_to_next_message(t *testing.T) {
	m, reg := newMetrics(t)
	second := m.HandlerMiddleware()(noop)
	first := m.HandlerMiddleware()(func(msg *message.Message) ([]*message.Message, error) {
		next := newMessage("name", "Second")
		next.SetContext(msg.Context())
		return second(next)
	})
	if _, err := first(newMessage("name", "First")); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"First", "Second"} {
		if v := value(t, reg, "cqrs_message_total", "message_type", typ); v != 1 {
			t.Errorf("cqrs_message_total{message_type=%q} = %v, want 1", typ, v)
		}
	}
}

func TestHandlerMiddleware_router(t *testing.T) {
	m, reg := newMetrics(t)
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{}, 2)
	// Router middlewares added first run outermost: this one sees the
	// handler return after promobs has observed it.
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			defer func() {
				select {
				case handled <- struct{}{}:
				default: // redeliveries of the failing message
				}
			}()
			return h(msg)
		}
	}, m.HandlerMiddleware())
	router.AddPublisherDecorators(m.PublisherDecorator())
	router.AddHandler("order_projector", "orders", pubSub, "orders.projected", pubSub,
		func(msg *message.Message) ([]*message.Message, error) {
			if msg.Metadata.Get("fail") != "" {
				return nil, errors.New("cannot project")
			}
			return []*message.Message{message.NewMessage(watermill.NewUUID(), nil)}, nil
		})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = router.Run(ctx) }()
	<-router.Running()

	ok := newMessage("name", "OrderPlaced", "message_kind", "event")
	bad := newMessage("name", "OrderPlaced", "message_kind", "event", "fail", "1")
	for _, msg := range []*message.Message{ok, bad} {
		if err := pubSub.Publish("orders", msg); err != nil {
			t.Fatal(err)
		}
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatal("message not handled")
		}
	}
	// The router publishes the returned message after the middlewares
	// return: wait for it before stopping the redeliveries of the failed one.
	deadline := time.Now().Add(10 * time.Second)
	for value(t, reg, "watermill_messages_published_total", "topic", "orders.projected", "outcome", "success") < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The failed message is nacked and redelivered; stop before counting.
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}

	if v := value(t, reg, "watermill_messages_consumed_total", "topic", "orders", "handler", "order_projector", "outcome", "success"); v != 1 {
		t.Errorf("consumed success = %v, want 1", v)
	}
	if v := value(t, reg, "watermill_messages_consumed_total", "topic", "orders", "handler", "order_projector", "outcome", "error"); v < 1 {
		t.Errorf("consumed error = %v, want at least 1", v)
	}
	if v := value(t, reg, "cqrs_message_total", "kind", "event", "message_type", "OrderPlaced", "outcome", "success"); v != 1 {
		t.Errorf("cqrs_message_total success = %v, want 1", v)
	}
	if v := value(t, reg, "watermill_messages_published_total", "topic", "orders.projected", "outcome", "success"); v != 1 {
		t.Errorf("published through the router's publisher = %v, want 1", v)
	}
}

func TestHandlerMiddleware_time_in_queue(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name        string
		publishedAt string
		wantCount   uint64
		wantSum     float64
	}{
		{"valid", start.Add(-1500 * time.Millisecond).Format(time.RFC3339Nano), 1, 1.5},
		{"other zone", start.Add(-3 * time.Second).In(time.FixedZone("x", 3600)).Format(time.RFC3339Nano), 1, 3},
		{"missing", "", 0, 0},
		{"malformed", "yesterday", 0, 0},
		{"in the future", start.Add(time.Minute).Format(time.RFC3339Nano), 0, 0},
		{"oversized", strings.Repeat("2026", 1<<18), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newMetrics(t, promobs.WithClock(stepClock(start, time.Millisecond)))
			msg := newMessage()
			if tt.publishedAt != "" {
				msg.Metadata.Set(contract.PublishedAtKey, tt.publishedAt)
			}
			if _, err := m.HandlerMiddleware()(noop)(msg); err != nil {
				t.Fatal(err)
			}
			s := find(t, reg, "watermill_message_time_in_queue_seconds")
			if s.GetHistogram().GetSampleCount() != tt.wantCount || s.GetHistogram().GetSampleSum() != tt.wantSum {
				t.Errorf("time in queue: count %d sum %v, want %d and %v",
					s.GetHistogram().GetSampleCount(), s.GetHistogram().GetSampleSum(), tt.wantCount, tt.wantSum)
			}
			if v := value(t, reg, "cqrs_message_total"); v != 1 {
				t.Errorf("cqrs_message_total = %v, want 1 whatever published_at holds", v)
			}
		})
	}
}

func TestHandlerMiddleware_label_values_bounded(t *testing.T) {
	tests := []struct {
		name string
		typ  string
	}{
		{"1 MiB", strings.Repeat("OrderPlaced", (1<<20)/11)},
		{"1 MiB invalid UTF-8", strings.Repeat("\xff\xfe", 1<<19)},
		{"invalid UTF-8", "Order\xc3("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newMetrics(t)
			if _, err := m.HandlerMiddleware()(noop)(newMessage("name", tt.typ)); err != nil {
				t.Fatal(err)
			}
			s := find(t, reg, "cqrs_message_total")
			if s == nil {
				t.Fatal("no cqrs_message_total series")
			}
			got := label(s, "message_type")
			if got == "" || len(got) > bound.Label || !utf8.ValidString(got) {
				t.Errorf("message_type label of %d bytes, valid UTF-8 %v; want 1..%d valid bytes",
					len(got), utf8.ValidString(got), bound.Label)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("lint: %v %v", problems, err)
			}
		})
	}
}

func TestHandlerMiddleware_cardinality_capped(t *testing.T) {
	const types = 10000
	m, reg := newMetrics(t) // default cap: promobs.DefaultMaxMessageTypes
	ok := m.HandlerMiddleware()(noop)
	fail := m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { return nil, errors.New("x") })
	for i := range types {
		msg := newMessage("name", fmt.Sprintf("Type%05d", i), "message_kind", "event")
		_, _ = ok(msg)
		if i%2 == 0 {
			msg.SetContext(context.Background())
			_, _ = fail(msg)
		}
	}
	for _, name := range []string{"cqrs_message_total", "cqrs_message_duration_seconds"} {
		n, err := testutil.GatherAndCount(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		// One kind, two outcomes, each at most cap+1 ("other") types.
		if limit := 2 * (promobs.DefaultMaxMessageTypes + 1); n > limit {
			t.Errorf("%s has %d series, want at most %d", name, n, limit)
		}
	}
	other := value(t, reg, "cqrs_message_total", "message_type", "other", "outcome", "success")
	if other != types-promobs.DefaultMaxMessageTypes {
		t.Errorf("other = %v, want %d", other, types-promobs.DefaultMaxMessageTypes)
	}
	if v := value(t, reg, "cqrs_message_total", "message_type", "Type00000", "outcome", "error"); v != 1 {
		t.Errorf("admitted type = %v, want 1", v)
	}
}

func TestHandlerMiddleware_exemplars(t *testing.T) {
	for _, sampled := range []bool{true, false} {
		t.Run(fmt.Sprintf("sampled=%v", sampled), func(t *testing.T) {
			m, reg := newMetrics(t)
			ctx, tid := sampledContext(sampled)
			msg := newMessage("name", "OrderPlaced", "published_at", time.Now().Add(-time.Millisecond).Format(time.RFC3339Nano))
			msg.SetContext(ctx)
			if _, err := m.HandlerMiddleware()(noop)(msg); err != nil {
				t.Fatal(err)
			}
			want := ""
			if sampled {
				want = tid.String()
			}
			for _, name := range []string{"cqrs_message_duration_seconds", "watermill_message_time_in_queue_seconds"} {
				s := find(t, reg, name)
				got := ""
				for _, b := range s.GetHistogram().GetBucket() {
					if e := b.GetExemplar(); e != nil {
						got = exemplarTraceID(t, e.GetLabel())
					}
				}
				if got != want {
					t.Errorf("%s exemplar trace_id = %q, want %q", name, got, want)
				}
			}
			for _, name := range []string{"cqrs_message_total", "watermill_messages_consumed_total"} {
				e := find(t, reg, name).GetCounter().GetExemplar()
				if got := exemplarTraceID(t, e.GetLabel()); got != want {
					t.Errorf("%s exemplar trace_id = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestHandlerMiddleware_concurrent(t *testing.T) {
	const goroutines, each = 8, 200
	m, reg := newMetrics(t, promobs.WithMaxMessageTypes(5))
	h := m.HandlerMiddleware()(noop)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				_, _ = h(newMessage("name", fmt.Sprintf("T%d", (g+i)%10)))
			}
		})
	}
	wg.Wait()
	if n, _ := testutil.GatherAndCount(reg, "cqrs_message_total"); n != 6 {
		t.Errorf("cqrs_message_total has %d series, want 5 admitted + other", n)
	}
	var total float64
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "cqrs_message_total" {
			for _, s := range mf.GetMetric() {
				total += s.GetCounter().GetValue()
			}
		}
	}
	if total != goroutines*each {
		t.Errorf("counted %v messages, want %d", total, goroutines*each)
	}
}

func TestHandlerMiddleware_nil_message(t *testing.T) {
	m, reg := newMetrics(t)
	called := false
	h := m.HandlerMiddleware()(func(msg *message.Message) ([]*message.Message, error) {
		called = msg == nil
		return nil, nil
	})
	if _, err := h(nil); err != nil || !called {
		t.Errorf("handler called with nil: %v, err %v", called, err)
	}
	if v := value(t, reg, "cqrs_message_total"); v != 0 {
		t.Errorf("cqrs_message_total = %v, want 0", v)
	}
}
