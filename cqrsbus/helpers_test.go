package cqrsbus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// waitTimeout bounds every wait of these tests.
const waitTimeout = 10 * time.Second

// The messages of the order scenario.
type (
	PlaceOrder     struct{ OrderID string }
	OrderPlaced    struct{ OrderID string }
	ReserveStock   struct{ OrderID string }
	GetOrderStatus struct{ OrderID string }
	OrderStatus    struct{ Status string }
	OrderShipped   struct{ OrderID string }
)

// marshaler names messages by their struct name ("PlaceOrder").
var marshaler = cqrs.JSONMarshaler{GenerateName: cqrs.StructName}

func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// newTracing returns a TracerProvider that records into the returned
// recorder.
func newTracing(t testing.TB) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// opRecorder is a hook that records the operations it sees.
type opRecorder struct {
	mu  sync.Mutex
	ops []hooks.Operation
}

func (r *opRecorder) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
	return next(ctx)
}

func (r *opRecorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.ops))
	for i, op := range r.ops {
		out[i] = op.Name
	}
	return out
}

// attrs returns the string attributes of the first operation called name.
func (r *opRecorder) attrs(t *testing.T, name string) map[string]string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, op := range r.ops {
		if op.Name == name {
			m := make(map[string]string, len(op.Attrs))
			for _, a := range op.Attrs {
				m[a.Key] = a.Value.String()
			}
			return m
		}
	}
	t.Fatalf("no operation %q among %q", name, r.namesLocked())
	return nil
}

func (r *opRecorder) namesLocked() []string {
	out := make([]string, len(r.ops))
	for i, op := range r.ops {
		out[i] = op.Name
	}
	return out
}

// newOpRecorder registers a recorder for every operation on a fresh
// registry.
func newOpRecorder(t testing.TB) (*hooks.Registry, *opRecorder) {
	t.Helper()
	reg := hooks.NewRegistry()
	rec := &opRecorder{}
	reg.MustRegister(rec)
	return reg, rec
}

// logBuffer is a concurrency-safe buffer of JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records parses the JSON lines written so far.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	data := b.buf.String()
	b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// handled returns the "message handled" records of message type typ.
func (b *logBuffer) handled(t testing.TB, typ string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range b.records(t) {
		if r["msg"] == "message handled" && r["message_type"] == typ {
			out = append(out, r)
		}
	}
	return out
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spansNamed returns the ended spans called name.
func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

// attr returns the attribute key of s as a string ("" if missing).
func attr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

func attributeKey(k string) attribute.Key { return attribute.Key(k) }
