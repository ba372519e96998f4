package watermillobs_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// propagatorChain runs the repro: a GoChannel router with two
// handlers (in -> out), instrumented with opts, then setGlobal (if any),
// then one message published through NewPublisher. It returns the four
// spans: send in, process in, send out, process out.
func propagatorChain(t *testing.T, setGlobal func(), opts ...watermillobs.Option) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	opts = append([]watermillobs.Option{watermillobs.WithTracerProvider(tp)}, opts...)

	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	prefix := testsvc.Prefix(t)
	in, out := prefix+"in", prefix+"out"
	r := testsvc.NewRouter(t)
	if err := instrument(r, watermillobs.InstrumentConfig{}, opts...); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 1)
	r.AddHandler("first", in, pubsub, out, pubsub, func(msg *message.Message) ([]*message.Message, error) {
		return []*message.Message{message.NewMessage(watermill.NewUUID(), nil)}, nil
	})
	r.AddConsumerHandler("second", out, pubsub, func(*message.Message) error {
		done <- struct{}{}
		return nil
	})
	pub := watermillobs.NewPublisher(pubsub, opts...)
	testsvc.RunRouter(t, r)
	if setGlobal != nil {
		setGlobal()
	}
	if err := pub.Publish(in, message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatal(err)
	}
	<-done
	got := e2eWaitSpans(t, rec, 4)
	if len(got) != 4 {
		t.Fatalf("spans %q, want 4", e2eSpanNames(got))
	}
	return []sdktrace.ReadOnlySpan{
		e2eOnlySpanNamed(t, got, "send "+in), e2eOnlySpanNamed(t, got, "process "+in),
		e2eOnlySpanNamed(t, got, "send "+out), e2eOnlySpanNamed(t, got, "process "+out),
	}
}

func wantOneTrace(t *testing.T, s []sdktrace.ReadOnlySpan) {
	t.Helper()
	for i := 1; i < len(s); i++ {
		e2eWantChild(t, s[i], s[i-1])
	}
}

// TestPropagator_global_set_after_instrument is issue #9's repro: the
// global propagator set after Instrument must still be used.
func TestPropagator_global_set_after_instrument(t *testing.T) {
	restoreGlobalPropagator(t)
	wantOneTrace(t, propagatorChain(t, func() { otel.SetTextMapPropagator(propagation.TraceContext{}) }))
}

func TestPropagator_global_set_before_instrument(t *testing.T) {
	restoreGlobalPropagator(t)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	wantOneTrace(t, propagatorChain(t, nil))
}

// TestPropagator_none_set_uses_w3c: with no propagator anywhere, W3C
// TraceContext is used and one Info record says so, once.
func TestPropagator_none_set_uses_w3c(t *testing.T) {
	restoreGlobalPropagator(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s := propagatorChain(t, nil, watermillobs.WithLogger(logger))
	wantOneTrace(t, s)
	// The record is once per process (contract tests it): at most one here.
	if n := strings.Count(logs.String(), "W3C TraceContext"); n > 1 {
		t.Errorf("want one Info record about the default propagator, got %d in:\n%s", n, logs.String())
	}
}

// TestPropagator_explicit_noop turns propagation off, as an option and as
// the global (OTEL_PROPAGATORS=none): every consumer span is a new root.
func TestPropagator_explicit_noop(t *testing.T) {
	noop := propagation.NewCompositeTextMapPropagator()
	for name, c := range map[string]struct {
		set  func()
		opts []watermillobs.Option
	}{
		"option": {opts: []watermillobs.Option{watermillobs.WithPropagators(noop)}},
		"global": {set: func() { otel.SetTextMapPropagator(noop) }},
	} {
		t.Run(name, func(t *testing.T) {
			restoreGlobalPropagator(t)
			if c.set != nil {
				c.set()
			}
			s := propagatorChain(t, nil, c.opts...)
			for _, sp := range []sdktrace.ReadOnlySpan{s[1], s[3]} {
				if sp.Parent().IsValid() {
					t.Errorf("%s: parent %s, want a new root (propagation off)", sp.Name(), sp.Parent().SpanID())
				}
			}
		})
	}
}

// TestPropagator_InjectMetadata_global: the functions without a router
// follow the same resolution.
func TestPropagator_InjectMetadata_global(t *testing.T) {
	restoreGlobalPropagator(t)
	_, tp, _ := newTracing(t)
	ctx, span := startSpan(tp, "work")
	defer span.End()
	ctx = hooks.WithCorrelationID(ctx, hooks.NewCorrelationID())

	msg := message.NewMessage(watermill.NewUUID(), nil)
	contract.NewPropagation(contract.PropagationConfig{}).Inject(ctx, msg)
	if msg.Metadata.Get(contract.TraceparentKey) == "" {
		t.Errorf("no propagator set: InjectMetadata wrote no traceparent, want W3C")
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	msg = message.NewMessage(watermill.NewUUID(), nil)
	contract.NewPropagation(contract.PropagationConfig{}).Inject(ctx, msg)
	if v := msg.Metadata.Get(contract.TraceparentKey); v != "" {
		t.Errorf("global no-op: InjectMetadata wrote traceparent %q", v)
	}
}
