package cqrsbus_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// seen is what a handler saw in its context.
type seen struct {
	correlation, causation string
	span                   trace.SpanContext
	msgSpan                trace.SpanContext
	calls                  int
}

func (s *seen) record(ctx context.Context, msg *message.Message) {
	s.calls++
	s.correlation = hooks.CorrelationID(ctx)
	s.causation = hooks.CausationID(ctx)
	s.span = trace.SpanContextFromContext(ctx)
	s.msgSpan = trace.SpanContextFromContext(msg.Context())
}

// producedMessage returns a message stamped as a producer in another
// process would stamp it, with that producer's span context.
func producedMessage(t *testing.T, kind, name string) (*message.Message, trace.SpanContext) {
	t.Helper()
	tp, _ := newTracing(t)
	ctx, span := tp.Tracer("producer").Start(context.Background(), "send")
	defer span.End()
	ctx = hooks.WithCorrelationID(ctx, "corr-h")
	msg := message.NewMessage("msg-uuid", []byte(`{}`))
	msg.Metadata.Set(contract.NameKey, name)
	msg.Metadata.Set(contract.MessageKindKey, kind)
	contract.NewPropagation(contract.PropagationConfig{Propagator: propagator()}).Inject(ctx, msg)
	return msg, span.SpanContext()
}

func TestOnCommandHandle_restores_conversation(t *testing.T) {
	tests := []struct {
		name     string
		withNext bool
	}{{"default handler call", false}, {"user OnHandle", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, rec := newTracing(t)
			reg, ops := newOpRecorder(t)
			obs := cqrsbus.New(cqrsbus.Config{TracerProvider: tp, Propagator: propagator(), Registry: reg})
			msg, producer := producedMessage(t, "command", "PlaceOrder")

			var got seen
			handler := cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
				got.record(ctx, msg)
				return nil
			})
			var next cqrs.CommandProcessorOnHandleFn
			userCalls := 0
			if tt.withNext {
				next = func(p cqrs.CommandProcessorOnHandleParams) error {
					userCalls++
					return p.Handler.Handle(p.Message.Context(), p.Command)
				}
			}
			err := obs.OnCommandHandle(next)(cqrs.CommandProcessorOnHandleParams{
				Handler: handler, CommandName: "PlaceOrder", Command: &PlaceOrder{}, Message: msg,
			})
			if err != nil {
				t.Fatal(err)
			}
			if sc := trace.SpanContextFromContext(msg.Context()); sc.IsValid() {
				t.Errorf("after the call the message context still holds span %s; want its own context back", sc.SpanID())
			}
			if tt.withNext && userCalls != 1 {
				t.Errorf("user OnHandle ran %d times, want 1", userCalls)
			}
			if got.calls != 1 || got.correlation != "corr-h" || got.causation != "msg-uuid" {
				t.Errorf("handler saw %+v; want one call, correlation corr-h, causation msg-uuid", got)
			}
			spans := spansNamed(rec, "cqrs.PlaceOrder")
			if len(spans) != 1 {
				t.Fatalf("spans %q, want one cqrs.PlaceOrder", spanNames(rec.Ended()))
			}
			s := spans[0]
			if s.Parent().SpanID() != producer.SpanID() || s.SpanContext().TraceID() != producer.TraceID() {
				t.Errorf("cqrs span parent %v, want the producer's span %v", s.Parent(), producer)
			}
			if got.span.SpanID() != s.SpanContext().SpanID() || got.msgSpan.SpanID() != s.SpanContext().SpanID() {
				t.Error("the handler's context and msg.Context() must carry the cqrs span")
			}
			for k, v := range map[string]string{
				"cqrs.command_type": "PlaceOrder", "cqrs.correlation_id": "corr-h", "cqrs.outcome": "success",
				"cqrs.message_kind": "command", "cqrs.handler": "place_order",
			} {
				if got := attr(s, attributeKey(k)); got != v {
					t.Errorf("span attribute %s = %q, want %q", k, got, v)
				}
			}
			a := ops.attrs(t, "command.handle.PlaceOrder")
			for k, v := range map[string]string{
				"command.type": "PlaceOrder", "command.id": "msg-uuid", "handler.type": "place_order",
				"correlation_id": "corr-h", "message_type": "PlaceOrder",
			} {
				if a[k] != v {
					t.Errorf("operation attribute %s = %q, want %q", k, a[k], v)
				}
			}
		})
	}
}

func TestOnCommandHandle_noop_provider_still_propagates(t *testing.T) {
	// Tracing switched off with trace/noop: no cqrs span is made, but the
	// conversation is restored and the producer's trace context reaches what
	// the handler sends, so the trace continues past this service.
	obs := cqrsbus.New(cqrsbus.Config{TracerProvider: noop.NewTracerProvider(), Propagator: propagator()})
	msg, producer := producedMessage(t, "command", "PlaceOrder")
	var got seen
	sent := message.NewMessage("reply-uuid", []byte(`{}`))
	handler := cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
		got.record(ctx, msg)
		contract.NewPropagation(contract.PropagationConfig{Propagator: propagator()}).Inject(ctx, sent)
		return nil
	})
	err := obs.OnCommandHandle(nil)(cqrs.CommandProcessorOnHandleParams{
		Handler: handler, CommandName: "PlaceOrder", Command: &PlaceOrder{}, Message: msg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.calls != 1 || got.correlation != "corr-h" || got.causation != "msg-uuid" {
		t.Errorf("handler saw %+v; want one call, correlation corr-h, causation msg-uuid", got)
	}
	if got.span.SpanID() != producer.SpanID() || !got.span.IsRemote() {
		t.Errorf("handler context span %v, want the producer's remote span %v", got.span, producer)
	}
	if want := "00-" + producer.TraceID().String() + "-" + producer.SpanID().String() + "-01"; sent.Metadata.Get(contract.TraceparentKey) != want {
		t.Errorf("sent traceparent %q, want %q", sent.Metadata.Get(contract.TraceparentKey), want)
	}
	if sent.Metadata.Get(contract.CorrelationIDKey) != "corr-h" || sent.Metadata.Get(contract.CausationIDKey) != "msg-uuid" {
		t.Errorf("sent metadata %v, want correlation corr-h and causation msg-uuid", sent.Metadata)
	}
}

func TestOnCommandHandle_keeps_router_context(t *testing.T) {
	tp, rec := newTracing(t)
	obs := cqrsbus.New(cqrsbus.Config{TracerProvider: tp, Propagator: propagator()})
	msg, _ := producedMessage(t, "command", "PlaceOrder")
	// As watermillobs' Correlation and Tracing middlewares leave it.
	ctx, local := tp.Tracer("router").Start(context.Background(), "process orders")
	ctx = hooks.WithCausationID(hooks.WithCorrelationID(ctx, "corr-h"), msg.UUID)
	msg.SetContext(ctx)
	handler := cqrs.NewCommandHandler("h", func(ctx context.Context, cmd *PlaceOrder) error { return nil })
	if err := obs.OnCommandHandle(nil)(cqrs.CommandProcessorOnHandleParams{Handler: handler, CommandName: "PlaceOrder", Command: &PlaceOrder{}, Message: msg}); err != nil {
		t.Fatal(err)
	}
	local.End()
	s := spansNamed(rec, "cqrs.PlaceOrder")
	if len(s) != 1 || s[0].Parent().SpanID() != local.SpanContext().SpanID() {
		t.Fatalf("cqrs span must be the child of the router's process span; spans %q", spanNames(rec.Ended()))
	}
}

func TestOnCommandHandle_error_and_panic(t *testing.T) {
	boom := errors.New("out of stock")
	tests := []struct {
		name          string
		handle        func() error
		wantErr       error
		wantPanic     any
		wantErrorType string
	}{
		{"error", func() error { return boom }, boom, nil, "*errors.errorString"},
		{"panic", func() error { panic("kaput") }, nil, "kaput", "panic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, rec := newTracing(t)
			obs := cqrsbus.New(cqrsbus.Config{TracerProvider: tp, Registry: hooks.NewRegistry()})
			msg, _ := producedMessage(t, "command", "ReserveStock")
			handler := cqrs.NewCommandHandler("reserve", func(ctx context.Context, cmd *ReserveStock) error { return tt.handle() })
			var err error
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				err = obs.OnCommandHandle(nil)(cqrs.CommandProcessorOnHandleParams{Handler: handler, CommandName: "ReserveStock", Command: &ReserveStock{}, Message: msg})
			}()
			if err != tt.wantErr || recovered != tt.wantPanic {
				t.Errorf("err %v panic %v; want err %v panic %v (unchanged)", err, recovered, tt.wantErr, tt.wantPanic)
			}
			s := spansNamed(rec, "cqrs.ReserveStock")
			if len(s) != 1 {
				t.Fatalf("spans %q", spanNames(rec.Ended()))
			}
			if s[0].Status().Code != codes.Error || attr(s[0], "cqrs.outcome") != "error" || attr(s[0], "error.type") != tt.wantErrorType {
				t.Errorf("span status %v outcome %q error.type %q; want Error, error, %q",
					s[0].Status(), attr(s[0], "cqrs.outcome"), attr(s[0], "error.type"), tt.wantErrorType)
			}
		})
	}
}

func TestOnCommandHandle_query_operation(t *testing.T) {
	reg, ops := newOpRecorder(t)
	obs := cqrsbus.New(cqrsbus.Config{Registry: reg})
	msg, _ := producedMessage(t, "query", "GetOrderStatus")
	handler := cqrs.NewCommandHandler("status", func(ctx context.Context, q *GetOrderStatus) error { return nil })
	if err := obs.OnCommandHandle(nil)(cqrs.CommandProcessorOnHandleParams{Handler: handler, CommandName: "GetOrderStatus", Command: &GetOrderStatus{}, Message: msg}); err != nil {
		t.Fatal(err)
	}
	a := ops.attrs(t, "query.handle.GetOrderStatus")
	if a["query.type"] != "GetOrderStatus" || a["query.id"] != "msg-uuid" {
		t.Errorf("attributes %v", a)
	}
}

func TestOnEventHandle_operations(t *testing.T) {
	reg, ops := newOpRecorder(t)
	obs := cqrsbus.New(cqrsbus.Config{Registry: reg})
	msg, _ := producedMessage(t, "event", "OrderPlaced")
	var got seen
	handler := cqrs.NewEventHandler("notify_customer", func(ctx context.Context, e *OrderPlaced) error {
		got.record(ctx, msg)
		return nil
	})
	userCalls := 0
	next := func(p cqrs.EventProcessorOnHandleParams) error {
		userCalls++
		return p.Handler.Handle(p.Message.Context(), p.Event)
	}
	if err := obs.OnEventHandle(next)(cqrs.EventProcessorOnHandleParams{Handler: handler, EventName: "OrderPlaced", Event: &OrderPlaced{}, Message: msg}); err != nil {
		t.Fatal(err)
	}
	if userCalls != 1 || got.calls != 1 {
		t.Errorf("user OnHandle ran %d times, handler %d; want 1 and 1", userCalls, got.calls)
	}
	names := ops.names()
	want := []string{"event.dispatch.OrderPlaced", "event.handler.OrderPlaced.notify_customer"}
	if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
		t.Fatalf("operations %q, want %q (dispatch around handler)", names, want)
	}
	d := ops.attrs(t, want[0])
	if d["event.type"] != "OrderPlaced" || d["event.id"] != "msg-uuid" || d["correlation_id"] != "corr-h" {
		t.Errorf("dispatch attributes %v", d)
	}
	if _, ok := d["handler.type"]; ok {
		t.Errorf("dispatch attributes carry handler.type: %v", d)
	}
	h := ops.attrs(t, want[1])
	if h["handler.type"] != "notify_customer" || h["event.type"] != "OrderPlaced" || h["event.id"] != "msg-uuid" {
		t.Errorf("handler attributes %v", h)
	}
	if got.correlation != "corr-h" || got.causation != "msg-uuid" {
		t.Errorf("handler saw correlation %q causation %q", got.correlation, got.causation)
	}
}

func TestOnEventGroupHandle_names_handler_by_group(t *testing.T) {
	reg, ops := newOpRecorder(t)
	tp, rec := newTracing(t)
	obs := cqrsbus.New(cqrsbus.Config{Registry: reg, TracerProvider: tp})
	msg, _ := producedMessage(t, "event", "OrderPlaced")
	handler := cqrs.NewGroupEventHandler(func(ctx context.Context, e *OrderPlaced) error { return nil })
	if err := obs.OnEventGroupHandle(nil)(cqrs.EventGroupProcessorOnHandleParams{GroupName: "billing", Handler: handler, EventName: "OrderPlaced", Event: &OrderPlaced{}, Message: msg}); err != nil {
		t.Fatal(err)
	}
	h := ops.attrs(t, "event.handler.OrderPlaced.billing")
	if h["handler.group"] != "billing" {
		t.Errorf("attributes %v", h)
	}
	if s := spansNamed(rec, "cqrs.OrderPlaced"); len(s) != 1 || attr(s[0], "cqrs.message_kind") != "event" {
		t.Errorf("spans %q", spanNames(rec.Ended()))
	}
}

func TestHandle_hook_panic_does_not_fail_message(t *testing.T) {
	tests := []struct {
		name        string
		panicBefore bool
	}{{"before next", true}, {"after next", false}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := hooks.NewRegistry()
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				if tt.panicBefore {
					panic("broken hook")
				}
				_ = next(ctx)
				panic("broken hook")
			}))
			var logs logBuffer
			obs := cqrsbus.New(cqrsbus.Config{Registry: reg, Logger: logs.logger()})
			msg, _ := producedMessage(t, "command", "PlaceOrder")
			calls := 0
			boom := errors.New("handler error")
			handler := cqrs.NewCommandHandler("h", func(ctx context.Context, cmd *PlaceOrder) error {
				calls++
				return boom
			})
			err := obs.OnCommandHandle(nil)(cqrs.CommandProcessorOnHandleParams{Handler: handler, CommandName: "PlaceOrder", Command: &PlaceOrder{}, Message: msg})
			if err != boom || calls != 1 {
				t.Errorf("err %v, handler ran %d times; want the handler's error and 1", err, calls)
			}
			if len(logs.records(t)) != 1 {
				t.Errorf("want one log record of the hook panic, got %v", logs.records(t))
			}
		})
	}
}

func TestHandle_unobserved(t *testing.T) {
	// Tracing off (trace/noop) and no hook enabled: nothing is made of the
	// handling but the conversation, and the handler's error, a panic and
	// the message's context come out as they would without this package.
	boom := errors.New("out of stock")
	type call func(obs *cqrsbus.Instrumentation, msg *message.Message, fn func(ctx context.Context) error) error
	processors := []struct {
		name string
		call call
	}{
		{"command", func(obs *cqrsbus.Instrumentation, msg *message.Message, fn func(context.Context) error) error {
			h := cqrs.NewCommandHandler("place_order", func(ctx context.Context, _ *PlaceOrder) error { return fn(ctx) })
			return obs.OnCommandHandle(nil)(cqrs.CommandProcessorOnHandleParams{Handler: h, CommandName: "PlaceOrder", Command: &PlaceOrder{}, Message: msg})
		}},
		{"event", func(obs *cqrsbus.Instrumentation, msg *message.Message, fn func(context.Context) error) error {
			h := cqrs.NewEventHandler("notify", func(ctx context.Context, _ *OrderPlaced) error { return fn(ctx) })
			return obs.OnEventHandle(nil)(cqrs.EventProcessorOnHandleParams{Handler: h, EventName: "OrderPlaced", Event: &OrderPlaced{}, Message: msg})
		}},
		{"event group", func(obs *cqrsbus.Instrumentation, msg *message.Message, fn func(context.Context) error) error {
			h := cqrs.NewGroupEventHandler(func(ctx context.Context, _ *OrderPlaced) error { return fn(ctx) })
			return obs.OnEventGroupHandle(nil)(cqrs.EventGroupProcessorOnHandleParams{GroupName: "billing", Handler: h, EventName: "OrderPlaced", Event: &OrderPlaced{}, Message: msg})
		}},
	}
	outcomes := []struct {
		name      string
		fn        func() error
		wantErr   error
		wantPanic any
	}{
		{"success", func() error { return nil }, nil, nil},
		{"error", func() error { return boom }, boom, nil},
		{"panic", func() error { panic("kaput") }, nil, "kaput"},
	}
	for _, p := range processors {
		for _, o := range outcomes {
			t.Run(p.name+"/"+o.name, func(t *testing.T) {
				obs := cqrsbus.New(cqrsbus.Config{TracerProvider: noop.NewTracerProvider(), Propagator: propagator(), Registry: hooks.NewRegistry()})
				msg, producer := producedMessage(t, "command", "PlaceOrder")
				type origKey struct{}
				orig := context.WithValue(context.Background(), origKey{}, "router")
				msg.SetContext(orig)
				var got seen
				var err error
				var recovered any
				func() {
					defer func() { recovered = recover() }()
					err = p.call(obs, msg, func(ctx context.Context) error {
						got.record(ctx, msg)
						return o.fn()
					})
				}()
				if err != o.wantErr || recovered != o.wantPanic {
					t.Errorf("err %v panic %v; want err %v panic %v (unchanged)", err, recovered, o.wantErr, o.wantPanic)
				}
				if got.calls != 1 || got.correlation != "corr-h" || got.causation != "msg-uuid" {
					t.Errorf("handler saw %+v; want one call, correlation corr-h, causation msg-uuid", got)
				}
				if got.span.SpanID() != producer.SpanID() || got.msgSpan.SpanID() != producer.SpanID() {
					t.Errorf("handler context span %v, msg.Context() span %v; want the producer's %v", got.span, got.msgSpan, producer)
				}
				if msg.Context() != orig {
					t.Error("after the call msg.Context() must be the context the message came with")
				}
			})
		}
	}

	// A hook enabled for the family is still run with tracing off.
	for _, tt := range []struct {
		processor int
		op        string
	}{{0, "command.handle.PlaceOrder"}, {1, "event.dispatch.OrderPlaced"}, {2, "event.handler.OrderPlaced.billing"}} {
		t.Run(processors[tt.processor].name+"/hook", func(t *testing.T) {
			reg, ops := newOpRecorder(t)
			obs := cqrsbus.New(cqrsbus.Config{TracerProvider: noop.NewTracerProvider(), Propagator: propagator(), Registry: reg})
			msg, _ := producedMessage(t, "command", "PlaceOrder")
			if err := processors[tt.processor].call(obs, msg, func(context.Context) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if a := ops.attrs(t, tt.op); a["correlation_id"] != "corr-h" {
				t.Errorf("operation %s attributes %v", tt.op, a)
			}
		})
	}
}
