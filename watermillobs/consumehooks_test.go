package watermillobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// consumeRecorder is a hook that records the operations it wraps.
type consumeRecorder struct {
	mu  sync.Mutex
	ops []hooks.Operation
	// errs are the errors next returned.
	errs []error
}

func (r *consumeRecorder) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	err := next(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	r.errs = append(r.errs, err)
	return err
}

func (r *consumeRecorder) recorded() ([]hooks.Operation, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops), slices.Clone(r.errs)
}

func opAttr(op hooks.Operation, key string) (string, bool) {
	v, ok := op.Attr(key)
	return v.String(), ok
}

func consumeMsg(uuid string, md map[string]string) *message.Message {
	msg := message.NewMessage(uuid, []byte(`{}`))
	for k, v := range md {
		msg.Metadata.Set(k, v)
	}
	return msg
}

func consumeOK(*message.Message) ([]*message.Message, error) { return nil, nil }

func TestConsumeHooks_operation(t *testing.T) {
	tests := []struct {
		name      string
		metadata  map[string]string
		wantName  string
		wantAttrs map[string]string
		wantNo    []string
	}{
		{
			name:     "typed message",
			metadata: map[string]string{"name": "OrderPlaced", "correlation_id": "cid-1"},
			wantName: "consumer.consume.OrderPlaced",
			wantAttrs: map[string]string{
				"event.type": "OrderPlaced", "message_type": "OrderPlaced",
				"correlation_id": "cid-1", "message.id": "m-1",
			},
			wantNo: []string{"handler", "topic"},
		},
		{
			name:      "no type, no correlation",
			wantName:  "consumer.consume.unknown",
			wantAttrs: map[string]string{"event.type": "unknown", "message.id": "m-1"},
			wantNo:    []string{"correlation_id"},
		},
		{
			name:      "malformed correlation ID is omitted",
			metadata:  map[string]string{"name": "OrderPlaced", "correlation_id": "has space"},
			wantName:  "consumer.consume.OrderPlaced",
			wantAttrs: map[string]string{"event.type": "OrderPlaced"},
			wantNo:    []string{"correlation_id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := hooks.NewRegistry()
			rec := &consumeRecorder{}
			reg.MustRegister(rec, hooks.WithOperations("consumer.consume.*"))
			h := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg))(consumeOK)
			if _, err := h(consumeMsg("m-1", tt.metadata)); err != nil {
				t.Fatal(err)
			}
			ops, _ := rec.recorded()
			if len(ops) != 1 {
				t.Fatalf("hook saw %d operations, want 1", len(ops))
			}
			if ops[0].Name != tt.wantName {
				t.Errorf("operation = %q, want %q", ops[0].Name, tt.wantName)
			}
			for k, want := range tt.wantAttrs {
				if got, _ := opAttr(ops[0], k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			for _, k := range tt.wantNo {
				if got, ok := opAttr(ops[0], k); ok {
					t.Errorf("%s = %q, want it omitted", k, got)
				}
			}
		})
	}
}

func TestConsumeHooks_registryFromContext(t *testing.T) {
	reg := hooks.NewRegistry()
	rec := &consumeRecorder{}
	reg.MustRegister(rec)
	msg := consumeMsg("m-1", map[string]string{"name": "OrderPlaced"})
	msg.SetContext(hooks.WithRegistry(context.Background(), reg))
	if _, err := watermillobs.ConsumeHooks()(consumeOK)(msg); err != nil {
		t.Fatal(err)
	}
	if ops, _ := rec.recorded(); len(ops) != 1 || ops[0].Name != "consumer.consume.OrderPlaced" {
		t.Errorf("hook of the context's registry saw %v", ops)
	}
}

func TestConsumeHooks_messageTypes(t *testing.T) {
	reg := hooks.NewRegistry()
	rec := &consumeRecorder{}
	reg.MustRegister(rec, hooks.WithMessageTypes("OrderPlaced"))
	h := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg))(consumeOK)
	for _, typ := range []string{"OrderShipped", "OrderPlaced", "OrderCancelled"} {
		if _, err := h(consumeMsg("m-"+typ, map[string]string{"name": typ})); err != nil {
			t.Fatal(err)
		}
	}
	ops, _ := rec.recorded()
	if len(ops) != 1 || ops[0].Name != "consumer.consume.OrderPlaced" {
		t.Errorf("filtered hook saw %v, want only OrderPlaced", ops)
	}
}

func TestConsumeHooks_results(t *testing.T) {
	errHandler := errors.New("handler failed")
	produced := []*message.Message{message.NewMessage("out-1", nil)}
	tests := []struct {
		name    string
		handler message.HandlerFunc
		wantMsg []*message.Message
		wantErr error
	}{
		{
			name:    "produced messages",
			handler: func(*message.Message) ([]*message.Message, error) { return produced, nil },
			wantMsg: produced,
		},
		{
			name:    "handler error",
			handler: func(*message.Message) ([]*message.Message, error) { return nil, errHandler },
			wantErr: errHandler,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := hooks.NewRegistry()
			rec := &consumeRecorder{}
			reg.MustRegister(rec)
			msgs, err := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg))(tt.handler)(consumeMsg("m-1", nil))
			if err != tt.wantErr {
				t.Errorf("error = %v, want %v unchanged", err, tt.wantErr)
			}
			if !slices.Equal(msgs, tt.wantMsg) {
				t.Errorf("messages = %v, want %v", msgs, tt.wantMsg)
			}
			if _, errs := rec.recorded(); len(errs) != 1 || errs[0] != tt.wantErr {
				t.Errorf("hook saw %v, want %v", errs, tt.wantErr)
			}
		})
	}
}

func TestConsumeHooks_handlerSeesHookContext(t *testing.T) {
	type key struct{}
	sr, tp := newHookTracer(t)
	reg := hookSpanRegistry(t, tp)
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return next(context.WithValue(ctx, key{}, "from hook"))
	}), hooks.WithPriority(10))

	var gotValue any
	var gotSpan trace.SpanContext
	h := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg))(func(msg *message.Message) ([]*message.Message, error) {
		gotValue = msg.Context().Value(key{})
		gotSpan = trace.SpanContextFromContext(msg.Context())
		return nil, nil
	})
	if _, err := h(consumeMsg("m-1", map[string]string{"name": "OrderPlaced"})); err != nil {
		t.Fatal(err)
	}
	if gotValue != "from hook" {
		t.Errorf("handler's context value = %v, want the hook's", gotValue)
	}
	s := onlyHookSpan(t, sr)
	if s.Name() != "consumer.consume.OrderPlaced" || !gotSpan.Equal(s.SpanContext()) {
		t.Errorf("handler ran in span %v, want the hook span %q %v", gotSpan.SpanID(), s.Name(), s.SpanContext().SpanID())
	}
}

func TestConsumeHooks_refusal(t *testing.T) {
	errLimited := errors.New("rate limited")
	reg := hooks.NewRegistry()
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return errLimited
	}))
	called := false
	h := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg))(func(*message.Message) ([]*message.Message, error) {
		called = true
		return nil, nil
	})
	msgs, err := h(consumeMsg("m-1", nil))
	if err != errLimited || msgs != nil {
		t.Errorf("got %v, %v; want the hook's error", msgs, err)
	}
	if called {
		t.Error("handler ran although the hook refused")
	}
}

func TestConsumeHooks_handlerPanic(t *testing.T) {
	reg := hooks.NewRegistry()
	rec := &consumeRecorder{}
	reg.MustRegister(rec)
	type boom struct{ msg string }
	want := &boom{"handler bug"}
	h := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg))(func(*message.Message) ([]*message.Message, error) {
		panic(want)
	})
	got := func() (v any) {
		defer func() { v = recover() }()
		_, _ = h(consumeMsg("m-1", nil))
		return nil
	}()
	if got != want {
		t.Errorf("recovered %v, want the handler's panic value unchanged", got)
	}
	if _, errs := rec.recorded(); len(errs) != 0 {
		t.Errorf("next returned %v to the hook; want the panic to unwind through it", errs)
	}
}

func TestConsumeHooks_hookPanic(t *testing.T) {
	errHandler := errors.New("handler failed")
	tests := []struct {
		name      string
		afterNext bool
	}{
		{name: "before the handler"},
		{name: "after the handler", afterNext: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			reg := hooks.NewRegistry()
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				if tt.afterNext {
					_ = next(ctx)
				}
				panic("hook bug")
			}), hooks.WithName("buggy"))
			calls := 0
			h := watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg), watermillobs.WithLogger(logger))(
				func(*message.Message) ([]*message.Message, error) {
					calls++
					return nil, errHandler
				})
			if _, err := h(consumeMsg("m-1", nil)); err != errHandler {
				t.Errorf("error = %v, want the handler's", err)
			}
			if calls != 1 {
				t.Errorf("handler ran %d times, want once", calls)
			}
			var rec map[string]any
			if err := json.Unmarshal(logs.Bytes(), &rec); err != nil {
				t.Fatalf("log output %q: %v", logs.String(), err)
			}
			if rec["level"] != "ERROR" || rec["hook"] != "buggy" || rec["panic"] != "hook bug" || rec["message_uuid"] != "m-1" {
				t.Errorf("log record = %v", rec)
			}
		})
	}
}

// raceBuild reports whether the test binary was built with -race, which
// adds allocations.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func TestAllocs_consume_hooks_unobserved(t *testing.T) {
	if raceBuild() {
		t.Skip("allocation counts are not pinned under -race")
	}
	unrelated := hooks.NewRegistry()
	unrelated.MustRegister(&consumeRecorder{}, hooks.WithOperations("saga.*", "consumer.publish.*"))
	disabled := hooks.NewRegistry()
	disabled.MustRegister(&consumeRecorder{}, hooks.WithOperations("consumer.consume.*"), hooks.WithEnabled(false))
	tests := []struct {
		name string
		reg  *hooks.Registry
	}{
		{name: "empty registry", reg: hooks.NewRegistry()},
		{name: "unrelated hooks", reg: unrelated},
		{name: "disabled hook", reg: disabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := consumeMsg("m-1", map[string]string{"name": "OrderPlaced", "correlation_id": "cid"})
			msg.SetContext(hooks.WithRegistry(context.Background(), tt.reg))
			bare := message.HandlerFunc(consumeOK)
			wrapped := watermillobs.ConsumeHooks()(bare)
			base := testing.AllocsPerRun(100, func() { _, _ = bare(msg) })
			got := testing.AllocsPerRun(100, func() { _, _ = wrapped(msg) })
			if got != base {
				t.Errorf("wrapped handler allocates %v times per message, bare %v", got, base)
			}
		})
	}
}

func TestConsumeHooks_router(t *testing.T) {
	reg := hooks.NewRegistry()
	rec := &consumeRecorder{}
	reg.MustRegister(rec)

	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(reg)))
	handled := make(chan string, 2)
	router.AddConsumerHandler("orders-handler", "orders", pubSub, func(msg *message.Message) error {
		handled <- msg.UUID
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	select {
	case <-router.Running():
	case <-ctx.Done():
		t.Fatal("router did not start")
	}
	if err := pubSub.Publish("orders",
		consumeMsg("typed", map[string]string{"name": "OrderPlaced"}),
		consumeMsg("untyped", nil),
	); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("messages were not handled")
		}
	}
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}

	ops, _ := rec.recorded()
	byID := map[string]hooks.Operation{}
	for _, op := range ops {
		id, _ := opAttr(op, "message.id")
		byID[id] = op
	}
	want := map[string]string{
		"typed":   "consumer.consume.OrderPlaced",
		"untyped": "consumer.consume.orders-handler",
	}
	for id, name := range want {
		op, ok := byID[id]
		if !ok {
			t.Errorf("no operation for message %s", id)
			continue
		}
		if op.Name != name {
			t.Errorf("message %s: operation %q, want %q", id, op.Name, name)
		}
		if h, _ := opAttr(op, "handler"); h != "orders-handler" {
			t.Errorf("message %s: handler = %q", id, h)
		}
		if topic, _ := opAttr(op, "topic"); topic != "orders" {
			t.Errorf("message %s: topic = %q", id, topic)
		}
		if typ, _ := opAttr(op, "message_type"); !strings.HasPrefix(name, "consumer.consume."+typ) {
			t.Errorf("message %s: message_type = %q", id, typ)
		}
	}
}
