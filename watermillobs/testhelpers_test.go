package watermillobs_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// w3c is the propagator every test passes explicitly: tests never rely on
// the globals.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// w3cPropagation writes and reads the contract with w3c.
var w3cPropagation = contract.NewPropagation(contract.PropagationConfig{Propagator: w3c})

// inject stamps the metadata contract onto msg as a producer does.
func inject(ctx context.Context, msg *message.Message) { w3cPropagation.Inject(ctx, msg) }

// newTracing returns a span recorder and the options that make this
// package's components record into it.
func newTracing(t *testing.T) (*tracetest.SpanRecorder, *sdktrace.TracerProvider, []watermillobs.Option) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp, []watermillobs.Option{watermillobs.WithTracerProvider(tp), watermillobs.WithPropagators(w3c)}
}

func spanAttr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func spanByName(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			if found != nil {
				t.Fatalf("more than one span named %q", name)
			}
			found = s
		}
	}
	if found == nil {
		names := []string{}
		for _, s := range rec.Ended() {
			names = append(names, s.Name())
		}
		t.Fatalf("no span named %q among %q", name, names)
	}
	return found
}

// startSpan starts a recorded span and returns its context.
func startSpan(tp trace.TracerProvider, name string) (context.Context, trace.Span) {
	return tp.Tracer("test").Start(context.Background(), name)
}

func attributeKey(k string) attribute.Key { return attribute.Key(k) }
