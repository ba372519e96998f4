package watermillobs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// e2eTimeout bounds every wait of the end-to-end tests: a message that has
// not been handled, or a span that has not ended, by then is a failure.
const e2eTimeout = 10 * time.Second

// e2ePropagator is passed explicitly to every component of the end-to-end
// tests, so that they never depend on the global propagator.
func e2ePropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// instrument installs the whole recommended set on r, with logs discarded
// and a private (empty) hook registry.
func instrument(r *message.Router, config watermillobs.InstrumentConfig, opts ...watermillobs.Option) error {
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil))
	return watermillobs.Instrument(r, config, append([]watermillobs.Option{
		watermillobs.WithLogger(quiet),
		watermillobs.WithHookRegistry(hooks.NewRegistry()),
	}, opts...)...)
}

// e2ePropagatorMode is where the components of a scenario get their
// propagator from.
type e2ePropagatorMode string

const (
	// e2eExplicitPropagator: WithPropagators(e2ePropagator()) everywhere.
	e2eExplicitPropagator e2ePropagatorMode = "explicit"
	// e2eGlobalSetAfter: no option; otel.SetTextMapPropagator is called
	// after everything was instrumented and the router runs.
	e2eGlobalSetAfter e2ePropagatorMode = "global set after"
	// e2eNoPropagator: no option and no global propagator ever set.
	e2eNoPropagator e2ePropagatorMode = "no propagator"
)

// restoreGlobalPropagator makes the global propagator OTel's initial one
// (none set) for the test and restores the current one after it. Tests
// that call it must not run in parallel.
func restoreGlobalPropagator(t *testing.T) {
	t.Helper()
	prev := otel.GetTextMapPropagator()
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	otel.SetTextMapPropagator(initialGlobalPropagator)
}

// initialGlobalPropagator is OTel's global before any propagator is set,
// taken when the test binary starts.
var initialGlobalPropagator = otel.GetTextMapPropagator()

// newE2EProcessGlobal is newE2EProcess without WithPropagators: the
// components use the global propagator.
func newE2EProcessGlobal(t *testing.T, extra ...watermillobs.Option) e2eProcess {
	t.Helper()
	p := newE2EProcess(t, extra...)
	p.opts = append(p.opts[:1:1], extra...)
	return p
}

// e2eProcess stands for one process of a distributed system: its own
// TracerProvider, recording into its own recorder.
type e2eProcess struct {
	rec  *tracetest.SpanRecorder
	opts []watermillobs.Option
}

// newE2EProcess returns a process whose options carry its TracerProvider,
// the W3C propagator and extra.
func newE2EProcess(t *testing.T, extra ...watermillobs.Option) e2eProcess {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	opts := append([]watermillobs.Option{
		watermillobs.WithTracerProvider(tp),
		watermillobs.WithPropagators(e2ePropagator()),
	}, extra...)
	return e2eProcess{rec: rec, opts: opts}
}

// e2eTransport is a Pub/Sub shared by process A (the publisher that starts
// the conversation) and process B (the router).
type e2eTransport struct {
	// pubA is process A's publisher, undecorated.
	pubA message.Publisher
	// pubB is process B's publisher, undecorated.
	pubB message.Publisher
	// sub is process B's subscriber.
	sub message.Subscriber
	// system is the messaging.system the spans should report.
	system string
	// prefix makes the topic names unique to the test.
	prefix string
}

func (tr e2eTransport) topic(name string) string { return tr.prefix + name }

// e2eTransportFactory builds a fresh transport for one test; everything it
// opens is closed when the test ends.
type e2eTransportFactory func(t *testing.T) e2eTransport

// e2eRedisTransport is real Redis Streams: process A and process B have their
// own publishers; B consumes in a consumer group of its own. Every
// publisher and subscriber has its own client, as closing them closes it.
func e2eRedisTransport(t *testing.T) e2eTransport {
	t.Helper()
	_, prefix := testsvc.RedisPrefix(t)
	pubA := testsvc.RedisPublisher(t)
	pubB := testsvc.RedisPublisher(t)
	sub := testsvc.RedisSubscriber(t, prefix+"group")
	return e2eTransport{pubA: pubA, pubB: pubB, sub: sub, system: "redis", prefix: prefix}
}

// e2eGoChannelTransport is Watermill's in-process Pub/Sub: process A and B
// share it, but keep their own TracerProviders.
func e2eGoChannelTransport(t *testing.T) e2eTransport {
	t.Helper()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	return e2eTransport{pubA: pubsub, pubB: pubsub, sub: pubsub, system: "gochannel", prefix: testsvc.Prefix(t)}
}

// e2eReceived is what a handler saw of one message, copied while it ran.
type e2eReceived struct {
	handler  string
	topic    string
	uuid     string
	metadata message.Metadata
	// correlationID and causationID are the IDs in the handler's context.
	correlationID string
	causationID   string
}

// e2eInbox collects what handlers saw.
type e2eInbox struct {
	mu   sync.Mutex
	got  []e2eReceived
	more chan struct{}
}

func newE2EInbox() *e2eInbox { return &e2eInbox{more: make(chan struct{}, 1)} }

// record copies what msg carries in its handler.
func (in *e2eInbox) record(msg *message.Message) {
	ctx := msg.Context()
	r := e2eReceived{
		handler:       message.HandlerNameFromCtx(ctx),
		topic:         message.SubscribeTopicFromCtx(ctx),
		uuid:          msg.UUID,
		metadata:      maps.Clone(msg.Metadata),
		correlationID: hooks.CorrelationID(ctx),
		causationID:   hooks.CausationID(ctx),
	}
	in.mu.Lock()
	in.got = append(in.got, r)
	in.mu.Unlock()
	select {
	case in.more <- struct{}{}:
	default:
	}
}

func (in *e2eInbox) snapshot() []e2eReceived {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]e2eReceived(nil), in.got...)
}

// wait returns what handlers saw once at least n messages were handled.
func (in *e2eInbox) wait(t *testing.T, n int) []e2eReceived {
	t.Helper()
	deadline := time.After(e2eTimeout)
	for {
		if got := in.snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-in.more:
		case <-deadline:
			got := in.snapshot()
			t.Fatalf("%d of %d messages handled after %s: %+v", len(got), n, e2eTimeout, got)
		}
	}
}

// e2eByTopic returns the only message seen on topic.
func e2eByTopic(t *testing.T, got []e2eReceived, topic string) e2eReceived {
	t.Helper()
	var found []e2eReceived
	for _, r := range got {
		if r.topic == topic {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one message handled from %q, got %d: %+v", topic, len(found), found)
	}
	return found[0]
}

// e2eWaitSpans waits until rec holds n ended spans and returns them.
func e2eWaitSpans(t *testing.T, rec *tracetest.SpanRecorder, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(e2eTimeout)
	for {
		spans := rec.Ended()
		if len(spans) >= n {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d spans ended after %s: %v", len(spans), n, e2eTimeout, e2eSpanNames(spans))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func e2eSpanNames(spans []sdktrace.ReadOnlySpan) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.Name()
	}
	return names
}

// e2eOnlySpanNamed returns the only span called name.
func e2eOnlySpanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one span named %q, got %d among %q", name, len(found), e2eSpanNames(spans))
	}
	return found[0]
}

// e2eStringAttr returns the attribute key of s, and false if s has no string
// attribute key.
func e2eStringAttr(s sdktrace.ReadOnlySpan, key attribute.Key) (string, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.AsString(), kv.Value.Type() == attribute.STRING
		}
	}
	return "", false
}

// e2eWaitNoPending waits until the consumer group has acknowledged every
// message of stream.
func e2eWaitNoPending(t *testing.T, client *redis.Client, stream, group string) {
	t.Helper()
	deadline := time.Now().Add(e2eTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p, err := client.XPending(ctx, stream, group).Result()
		cancel()
		switch {
		case err != nil && !errors.Is(err, redis.Nil):
			t.Fatalf("cannot read pending messages of %s: %v", stream, err)
		case err == nil && p.Count == 0:
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("messages of %s still pending after %s: %+v", stream, e2eTimeout, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
