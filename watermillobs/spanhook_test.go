package watermillobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// newHookTracer returns a span recorder and a tracer provider that feeds it.
func newHookTracer(t *testing.T, opts ...sdktrace.TracerProviderOption) (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(sr)}, opts...)...)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return sr, tp
}

// hookSpanRegistry returns a private registry with the span hook on every
// operation.
func hookSpanRegistry(t *testing.T, tp trace.TracerProvider) *hooks.Registry {
	t.Helper()
	reg := hooks.NewRegistry()
	if _, err := reg.Register(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp))); err != nil {
		t.Fatal(err)
	}
	return reg
}

func hookSpanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func onlyHookSpan(t *testing.T, sr *tracetest.SpanRecorder) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := sr.Ended()
	if len(spans) != 1 {
		t.Fatalf("got %d ended spans, want 1", len(spans))
	}
	return spans[0]
}

type hookOrderID string

func (o hookOrderID) String() string { return "order-" + string(o) }

type hookPayload struct{ CardNumber string }

type hookLazy struct{ calls *int }

func (l hookLazy) LogValue() slog.Value {
	*l.calls++
	return slog.StringValue("resolved")
}

type hookNilStringer struct{ s string }

func (n *hookNilStringer) String() string { return n.s }

func TestSpanHook_spanIdentity(t *testing.T) {
	sr, tp := newHookTracer(t)
	reg := hookSpanRegistry(t, tp)

	long := strings.Repeat("x", 1000)
	if err := reg.Run(context.Background(), "uow.commit."+long, nil, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	s := onlyHookSpan(t, sr)
	if !strings.HasPrefix(s.Name(), "uow.commit.xxx") || len(s.Name()) > 256 {
		t.Errorf("name = %q (%d bytes), want the bounded operation name", s.Name()[:20], len(s.Name()))
	}
	if s.SpanKind() != trace.SpanKindInternal {
		t.Errorf("kind = %v, want internal", s.SpanKind())
	}
	if got := s.InstrumentationScope(); got.Name != watermillobs.ScopeName || got.Version != watermillobs.Version {
		t.Errorf("scope = %+v, want %s %s", got, watermillobs.ScopeName, watermillobs.Version)
	}
}

func TestSpanHook_attributes(t *testing.T) {
	calls := 0
	huge := strings.Repeat("é", 1000)
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	var typedNil *hookNilStringer
	attrs := []slog.Attr{
		slog.String("topic", "orders"),
		slog.Int("batch_size", 42),
		slog.Uint64("small_uint", 7),
		slog.Uint64("big_uint", math.MaxUint64),
		slog.Float64("ratio", 0.5),
		slog.Bool("retry", true),
		slog.Duration("timeout", 1500*time.Microsecond),
		slog.Duration("elapsed_ms", 2*time.Millisecond),
		slog.Time("deadline", at),
		slog.Group("order", slog.String("id", "o-1"), slog.Group("customer", slog.Int("tier", 2))),
		slog.Group("", slog.String("inlined", "yes")),
		slog.Any("lazy", hookLazy{&calls}),
		slog.Any("cause", errors.New("boom")),
		slog.Any("order_ref", hookOrderID("9")),
		slog.Any("tags", []string{"a", "b"}),
		slog.Any("payload", hookPayload{CardNumber: "4111"}),
		slog.Any("nil_stringer", typedNil),
		slog.String("huge", huge),
		slog.String("bad_utf8", "ok\xff"),
		slog.String("", "dropped"),
	}
	sr, tp := newHookTracer(t)
	reg := hookSpanRegistry(t, tp)
	if err := reg.Run(context.Background(), "outbox.process_batch", attrs, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got := hookSpanAttrs(onlyHookSpan(t, sr))

	want := map[attribute.Key]attribute.Value{
		"topic":               attribute.StringValue("orders"),
		"batch_size":          attribute.Int64Value(42),
		"small_uint":          attribute.Int64Value(7),
		"big_uint":            attribute.StringValue("18446744073709551615"),
		"ratio":               attribute.Float64Value(0.5),
		"retry":               attribute.BoolValue(true),
		"timeout_ms":          attribute.Float64Value(1.5),
		"elapsed_ms":          attribute.Float64Value(2),
		"deadline":            attribute.StringValue("2025-03-04T05:06:07.000000008Z"),
		"order.id":            attribute.StringValue("o-1"),
		"order.customer.tier": attribute.Int64Value(2),
		"inlined":             attribute.StringValue("yes"),
		"lazy":                attribute.StringValue("resolved"),
		"cause":               attribute.StringValue("boom"),
		"order_ref":           attribute.StringValue("order-9"),
		"tags":                attribute.StringSliceValue([]string{"a", "b"}),
		"bad_utf8":            attribute.StringValue("ok\uFFFD"),
		"outcome":             attribute.StringValue("success"),
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %v (%v), want %v (%v)", k, g.String(), g.Type(), w.String(), w.Type())
		}
	}
	for _, k := range []attribute.Key{"payload", "nil_stringer", "timeout", "elapsed_ms_ms", ""} {
		if v, ok := got[k]; ok {
			t.Errorf("%q = %v, want it skipped", k, v.String())
		}
	}
	if h := got["huge"].AsString(); len(h) > 256 || !strings.HasPrefix(h, "éé") {
		t.Errorf("huge is %d bytes, want at most 256", len(h))
	}
	if calls != 1 {
		t.Errorf("LogValue called %d times, want 1", calls)
	}
}

func TestSpanHook_contextAttributes(t *testing.T) {
	tests := []struct {
		name    string
		attrs   []slog.Attr
		wantCID string
	}{
		{name: "correlation from context", wantCID: "ctx-cid"},
		{name: "operation attribute wins", attrs: []slog.Attr{slog.String("correlation_id", "op-cid")}, wantCID: "op-cid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, tp := newHookTracer(t)
			reg := hookSpanRegistry(t, tp)
			ctx := hooks.WithCorrelationID(context.Background(), "ctx-cid")
			ctx = watermillobs.WithFields(ctx, slog.String("tenant", "acme"), slog.String("topic", "from-fields"))
			attrs := append([]slog.Attr{slog.String("topic", "orders")}, tt.attrs...)
			if err := reg.Run(ctx, "publisher.publish.orders", attrs, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			got := hookSpanAttrs(onlyHookSpan(t, sr))
			if g := got["correlation_id"].AsString(); g != tt.wantCID {
				t.Errorf("correlation_id = %q, want %q", g, tt.wantCID)
			}
			if g := got["tenant"].AsString(); g != "acme" {
				t.Errorf("tenant = %q, want the context field", g)
			}
			if g := got["topic"].AsString(); g != "orders" {
				t.Errorf("topic = %q, want the operation's attribute to win over the field", g)
			}
		})
	}
}

type hookTypedErr struct{}

func (hookTypedErr) Error() string     { return "typed" }
func (hookTypedErr) ErrorType() string { return "order.rejected" }

func TestSpanHook_outcome(t *testing.T) {
	plain := errors.New("db down")
	tests := []struct {
		name       string
		err        error
		panicValue any
		wantType   string
		wantStatus codes.Code
		wantDesc   string
	}{
		{name: "success", wantStatus: codes.Unset},
		{name: "plain error", err: plain, wantType: "*errors.errorString", wantStatus: codes.Error, wantDesc: "db down"},
		{name: "wrapped typed error", err: fmt.Errorf("saving: %w", hookTypedErr{}), wantType: "order.rejected", wantStatus: codes.Error, wantDesc: "saving: typed"},
		{name: "panic", panicValue: "kaboom", wantType: "panic", wantStatus: codes.Error, wantDesc: "panic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, tp := newHookTracer(t)
			reg := hookSpanRegistry(t, tp)
			var err error
			recovered := func() (v any) {
				defer func() { v = recover() }()
				err = reg.Run(context.Background(), "saga.run.OrderSaga", nil, func(context.Context) error {
					if tt.panicValue != nil {
						panic(tt.panicValue)
					}
					return tt.err
				})
				return nil
			}()
			if recovered != tt.panicValue {
				t.Errorf("panic = %v, want %v re-raised", recovered, tt.panicValue)
			}
			if err != tt.err {
				t.Errorf("Run returned %v, want the operation's error unchanged", err)
			}
			s := onlyHookSpan(t, sr)
			got := hookSpanAttrs(s)
			wantOutcome := "success"
			if tt.wantType != "" {
				wantOutcome = "error"
			}
			if g := got["outcome"].AsString(); g != wantOutcome {
				t.Errorf("outcome = %q, want %q", g, wantOutcome)
			}
			if g := got["error.type"].AsString(); g != tt.wantType {
				t.Errorf("error.type = %q, want %q", g, tt.wantType)
			}
			if st := s.Status(); st.Code != tt.wantStatus || st.Description != tt.wantDesc {
				t.Errorf("status = %v %q, want %v %q", st.Code, st.Description, tt.wantStatus, tt.wantDesc)
			}
		})
	}
}

func TestSpanHook_longErrorBounded(t *testing.T) {
	sr, tp := newHookTracer(t)
	reg := hookSpanRegistry(t, tp)
	_ = reg.Run(context.Background(), "uow.commit", nil, func(context.Context) error {
		return errors.New(strings.Repeat("e", 10000))
	})
	if d := onlyHookSpan(t, sr).Status().Description; len(d) > 1024 || len(d) < 1000 {
		t.Errorf("status description is %d bytes, want bounded to 1024", len(d))
	}
}

func TestSpanHook_nesting(t *testing.T) {
	sr, tp := newHookTracer(t)
	reg := hookSpanRegistry(t, tp)
	var inner trace.SpanContext
	innerHookSaw := trace.SpanContext{}
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		if op.Name == "uow.commit" {
			innerHookSaw = trace.SpanContextFromContext(ctx)
		}
		return next(ctx)
	}), hooks.WithPriority(10))

	ctx := hooks.WithRegistry(context.Background(), reg)
	var outer trace.SpanContext
	err := hooks.Run(ctx, "uow.commit", nil, func(ctx context.Context) error {
		outer = trace.SpanContextFromContext(ctx)
		return hooks.Run(ctx, "outbox.save_events", nil, func(ctx context.Context) error {
			inner = trace.SpanContextFromContext(ctx)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	spans := sr.Ended()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	child, parent := spans[0], spans[1]
	if parent.Name() != "uow.commit" || child.Name() != "outbox.save_events" {
		t.Fatalf("spans = %q, %q", parent.Name(), child.Name())
	}
	if child.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("child's parent = %s, want %s", child.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if !outer.Equal(parent.SpanContext()) || !inner.Equal(child.SpanContext()) {
		t.Error("operations did not see their spans in the context")
	}
	if !innerHookSaw.Equal(parent.SpanContext()) {
		t.Error("inner hook did not see the span in the context")
	}
}

func TestSpanHook_notRecording(t *testing.T) {
	sr, tp := newHookTracer(t, sdktrace.WithSampler(sdktrace.NeverSample()))
	reg := hookSpanRegistry(t, tp)
	calls := 0
	ran := false
	err := reg.Run(context.Background(), "uow.commit", []slog.Attr{slog.Any("lazy", hookLazy{&calls})}, func(context.Context) error {
		ran = true
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("operation ran = %v, err = %v", ran, err)
	}
	if n := len(sr.Ended()); n != 0 {
		t.Errorf("recorded %d spans, want none", n)
	}
	if calls != 0 {
		t.Errorf("attributes of an unsampled span were converted (%d LogValue calls)", calls)
	}
}

// Hooks composed by hand (hooks.Multi) get panics of next unconverted; the
// span must still end, and the panic must go on.
func TestSpanHook_panicThroughNext(t *testing.T) {
	sr, tp := newHookTracer(t)
	h := hooks.Multi(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)))
	got := func() (v any) {
		defer func() { v = recover() }()
		_ = h.Around(context.Background(), hooks.Operation{Name: "uow.commit"}, func(context.Context) error {
			panic("kaboom")
		})
		return nil
	}()
	if got != "kaboom" {
		t.Errorf("recovered %v, want the panic to propagate", got)
	}
	s := onlyHookSpan(t, sr)
	if g := hookSpanAttrs(s)["error.type"].AsString(); g != "panic" || s.Status().Code != codes.Error {
		t.Errorf("error.type = %q, status = %v; want panic, Error", g, s.Status().Code)
	}
}

// An operation marked with contract.WithLink (a saga timeout step, say)
// starts a new trace linked to the saved span; the operations nested in it
// are its children, not new roots.
func TestSpanHook_link(t *testing.T) {
	sr, tp := newHookTracer(t)
	reg := hookSpanRegistry(t, tp)

	parentCtx, parent := tp.Tracer("test").Start(context.Background(), "current")
	saved := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3},
		SpanID:     trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled,
		Remote:     true,
	})
	err := reg.Run(contract.WithLink(parentCtx, saved), "saga.run.OrderSaga", nil, func(ctx context.Context) error {
		return reg.Run(ctx, "redis.lock.release.saga", nil, func(context.Context) error { return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	parent.End()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range sr.Ended() {
		byName[s.Name()] = s
	}
	step, inner := byName["saga.run.OrderSaga"], byName["redis.lock.release.saga"]
	if step == nil || inner == nil {
		t.Fatalf("spans %v", byName)
	}
	if step.SpanContext().TraceID() == parent.SpanContext().TraceID() || step.SpanContext().TraceID() == saved.TraceID() {
		t.Errorf("linked step span is in trace %s, want a new trace", step.SpanContext().TraceID())
	}
	if step.Parent().IsValid() {
		t.Errorf("linked step span has parent %s, want a root", step.Parent().SpanID())
	}
	if links := step.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != saved.SpanID() || links[0].SpanContext.TraceID() != saved.TraceID() {
		t.Errorf("links = %+v, want one to the saved span", links)
	}
	if inner.Parent().SpanID() != step.SpanContext().SpanID() || len(inner.Links()) != 0 {
		t.Errorf("nested span parent %s links %d, want a child of the step without links", inner.Parent().SpanID(), len(inner.Links()))
	}

	// An invalid span context changes nothing: the span is a child.
	sr2, tp2 := newHookTracer(t)
	reg2 := hookSpanRegistry(t, tp2)
	ctx2, p2 := tp2.Tracer("test").Start(context.Background(), "current")
	_ = reg2.Run(contract.WithLink(ctx2, trace.SpanContext{}), "saga.run.OrderSaga", nil, func(context.Context) error { return nil })
	p2.End()
	if s := sr2.Ended()[0]; s.Parent().SpanID() != p2.SpanContext().SpanID() {
		t.Errorf("invalid link: parent %s, want the current span", s.Parent().SpanID())
	}
}
