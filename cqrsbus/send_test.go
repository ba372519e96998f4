package cqrsbus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// capturePublisher keeps what is published.
type capturePublisher struct {
	mu   sync.Mutex
	msgs []*message.Message
	err  error
}

func (p *capturePublisher) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return p.err
}

func (p *capturePublisher) Close() error { return nil }

func (p *capturePublisher) last(t *testing.T) *message.Message {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.msgs) == 0 {
		t.Fatal("nothing published")
	}
	return p.msgs[len(p.msgs)-1]
}

func topicByName(name string) string { return "topic." + name }

// newBuses returns instrumented command and event buses over pub; userSend
// and userPublish are the configurations' pre-existing hooks.
func newBuses(t *testing.T, obs *cqrsbus.Instrumentation, reg *hooks.Registry, pub message.Publisher,
	userSend cqrs.CommandBusOnSendFn, userPublish cqrs.OnEventSendFn,
) (*cqrsbus.CommandBus, *cqrsbus.EventBus) {
	t.Helper()
	cbc := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return topicByName(p.CommandName), nil
		},
		OnSend:    userSend,
		Marshaler: marshaler,
	}
	obs.InstrumentCommandBusConfig(&cbc)
	cb, err := cqrs.NewCommandBusWithConfig(pub, cbc)
	if err != nil {
		t.Fatal(err)
	}
	ebc := cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
			return topicByName(p.EventName), nil
		},
		OnPublish: userPublish,
		Marshaler: marshaler,
	}
	obs.InstrumentEventBusConfig(&ebc)
	eb, err := cqrs.NewEventBusWithConfig(pub, ebc)
	if err != nil {
		t.Fatal(err)
	}
	commands, err := cqrsbus.NewCommandBus(cb, cqrsbus.CommandBusConfig{Marshaler: marshaler, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	events, err := cqrsbus.NewEventBus(eb, cqrsbus.EventBusConfig{Marshaler: marshaler, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return commands, events
}

func TestSend_stamps_metadata_and_runs_user_hook_once(t *testing.T) {
	tp, _ := newTracing(t)
	obs := cqrsbus.New(cqrsbus.Config{TracerProvider: tp, Propagator: propagator()})
	pub := &capturePublisher{}
	var sends, publishes int
	var sawKind, sawCorrelation string
	userSend := func(p cqrs.CommandBusOnSendParams) error {
		sends++
		// Ours ran first: the user's hook sees the stamped metadata.
		sawKind = p.Message.Metadata.Get(contract.MessageKindKey)
		sawCorrelation = p.Message.Metadata.Get(contract.CorrelationIDKey)
		p.Message.Metadata.Set("tenant", "acme")
		return nil
	}
	userPublish := func(p cqrs.OnEventSendParams) error {
		publishes++
		return nil
	}
	commands, events := newBuses(t, obs, nil, pub, userSend, userPublish)

	ctx, span := tp.Tracer("test").Start(context.Background(), "entry")
	ctx = hooks.WithCorrelationID(ctx, "corr-1")
	ctx = hooks.WithCausationID(ctx, "cause-1")
	if err := commands.Send(ctx, &PlaceOrder{OrderID: "42"}); err != nil {
		t.Fatal(err)
	}
	cmd := pub.last(t)
	if err := events.Publish(ctx, &OrderPlaced{OrderID: "42"}); err != nil {
		t.Fatal(err)
	}
	evt := pub.last(t)
	span.End()

	if sends != 1 || publishes != 1 {
		t.Errorf("user OnSend ran %d times, OnPublish %d times; want 1 and 1", sends, publishes)
	}
	if sawKind != contract.KindCommand || sawCorrelation != "corr-1" {
		t.Errorf("user OnSend saw kind %q correlation %q, want stamped values first", sawKind, sawCorrelation)
	}
	traceID := trace.SpanContextFromContext(ctx).TraceID().String()
	for _, c := range []struct {
		msg  *message.Message
		kind string
		name string
	}{{cmd, contract.KindCommand, "PlaceOrder"}, {evt, contract.KindEvent, "OrderPlaced"}} {
		md := c.msg.Metadata
		want := map[string]string{
			contract.MessageKindKey:   c.kind,
			contract.NameKey:          c.name,
			contract.CorrelationIDKey: "corr-1",
			contract.CausationIDKey:   "cause-1",
		}
		for k, v := range want {
			if md.Get(k) != v {
				t.Errorf("%s: metadata %s = %q, want %q", c.name, k, md.Get(k), v)
			}
		}
		if tp := md.Get(contract.TraceparentKey); !strings.Contains(tp, traceID) {
			t.Errorf("%s: traceparent %q does not carry the caller's trace %s", c.name, tp, traceID)
		}
		if _, ok := contract.PublishedAt(c.msg); !ok {
			t.Errorf("%s: published_at missing or malformed: %q", c.name, md.Get(contract.PublishedAtKey))
		}
	}
	if cmd.Metadata.Get("tenant") != "acme" {
		t.Error("the user's OnSend change was lost")
	}
}

func TestSend_user_hook_error_returned(t *testing.T) {
	obs := cqrsbus.New(cqrsbus.Config{})
	boom := errors.New("refused")
	pub := &capturePublisher{}
	commands, events := newBuses(t, obs, nil, pub,
		func(cqrs.CommandBusOnSendParams) error { return boom },
		func(cqrs.OnEventSendParams) error { return boom })
	if err := commands.Send(context.Background(), &PlaceOrder{}); !errors.Is(err, boom) {
		t.Errorf("Send error = %v, want %v", err, boom)
	}
	if err := events.Publish(context.Background(), &OrderPlaced{}); !errors.Is(err, boom) {
		t.Errorf("Publish error = %v, want %v", err, boom)
	}
	if len(pub.msgs) != 0 {
		t.Errorf("%d messages published after the hook refused", len(pub.msgs))
	}
}

func TestSend_keeps_values_already_set(t *testing.T) {
	obs := cqrsbus.New(cqrsbus.Config{Propagator: propagator()})
	msg := message.NewMessage("uuid-1", nil)
	msg.Metadata.Set(contract.MessageKindKey, "query")
	msg.Metadata.Set(contract.NameKey, "Custom")
	msg.Metadata.Set(contract.CorrelationIDKey, "mine")
	msg.SetContext(hooks.WithCorrelationID(context.Background(), "ctx-corr"))
	err := obs.OnSend(nil)(cqrs.CommandBusOnSendParams{CommandName: "PlaceOrder", Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		contract.MessageKindKey: "query", contract.NameKey: "Custom", contract.CorrelationIDKey: "mine",
	} {
		if got := msg.Metadata.Get(k); got != v {
			t.Errorf("%s = %q, want the preset %q", k, got, v)
		}
	}
}

func TestCommandBus_kinds(t *testing.T) {
	tests := []struct {
		name     string
		send     func(ctx context.Context, b *cqrsbus.CommandBus) error
		wantKind string
		wantOp   string
	}{
		{"Send", func(ctx context.Context, b *cqrsbus.CommandBus) error {
			return b.Send(ctx, &PlaceOrder{})
		}, "command", "command.send.PlaceOrder"},
		{"modified plain", func(ctx context.Context, b *cqrsbus.CommandBus) error {
			return b.SendWithModifiedMessage(ctx, &PlaceOrder{}, func(m *message.Message) error {
				m.Metadata.Set("x", "y")
				return nil
			})
		}, "command", "command.send.PlaceOrder"},
		{"requestreply marked", func(ctx context.Context, b *cqrsbus.CommandBus) error {
			return b.SendWithModifiedMessage(ctx, &GetOrderStatus{}, func(m *message.Message) error {
				m.Metadata.Set(requestreply.OperationIDMetadataKey, "op-1")
				return nil
			})
		}, "query", "command.send.GetOrderStatus"},
		{"Queries view", func(ctx context.Context, b *cqrsbus.CommandBus) error {
			return b.Queries().Send(ctx, &GetOrderStatus{})
		}, "query", "query.send.GetOrderStatus"},
		{"Queries view with modify", func(ctx context.Context, b *cqrsbus.CommandBus) error {
			return b.Queries().SendWithModifiedMessage(ctx, &GetOrderStatus{}, func(m *message.Message) error {
				m.Metadata.Set(requestreply.OperationIDMetadataKey, "op-1")
				return nil
			})
		}, "query", "query.send.GetOrderStatus"},
		{"modify sets its own kind", func(ctx context.Context, b *cqrsbus.CommandBus) error {
			return b.SendWithModifiedMessage(ctx, &GetOrderStatus{}, func(m *message.Message) error {
				m.Metadata.Set(requestreply.OperationIDMetadataKey, "op-1")
				m.Metadata.Set(contract.MessageKindKey, "audit")
				return nil
			})
		}, "audit", "command.send.GetOrderStatus"},
	}
	for _, tt := range tests {
		for _, withOnSend := range []bool{true, false} {
			name := tt.name + "/without OnSend"
			if withOnSend {
				name = tt.name + "/with OnSend"
			}
			t.Run(name, func(t *testing.T) {
				reg, ops := newOpRecorder(t)
				pub := &capturePublisher{}
				cbc := cqrs.CommandBusConfig{
					GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return "t", nil },
					Marshaler:            marshaler,
				}
				if withOnSend {
					cqrsbus.New(cqrsbus.Config{}).InstrumentCommandBusConfig(&cbc)
				}
				inner, err := cqrs.NewCommandBusWithConfig(pub, cbc)
				if err != nil {
					t.Fatal(err)
				}
				bus, err := cqrsbus.NewCommandBus(inner, cqrsbus.CommandBusConfig{Marshaler: marshaler, Registry: reg})
				if err != nil {
					t.Fatal(err)
				}
				if err := tt.send(context.Background(), bus); err != nil {
					t.Fatal(err)
				}
				msg := pub.last(t)
				if got := msg.Metadata.Get(contract.MessageKindKey); got != tt.wantKind {
					t.Errorf("message_kind = %q, want %q", got, tt.wantKind)
				}
				if got := ops.names(); len(got) != 1 || got[0] != tt.wantOp {
					t.Fatalf("operations = %q, want [%q]", got, tt.wantOp)
				}
				attrs := ops.attrs(t, tt.wantOp)
				if attrs["message_type"] == "" || attrs["correlation_id"] == "" {
					t.Errorf("operation attributes %v lack message_type or correlation_id", attrs)
				}
				if withOnSend && attrs["correlation_id"] != msg.Metadata.Get(contract.CorrelationIDKey) {
					t.Errorf("operation correlation_id %q differs from the message's %q",
						attrs["correlation_id"], msg.Metadata.Get(contract.CorrelationIDKey))
				}
			})
		}
	}
}

func TestEventBus_operation(t *testing.T) {
	reg, ops := newOpRecorder(t)
	pub := &capturePublisher{}
	_, events := newBuses(t, cqrsbus.New(cqrsbus.Config{}), reg, pub, nil, nil)
	ctx := hooks.WithCorrelationID(context.Background(), "corr-7")
	if err := events.Publish(ctx, &OrderPlaced{}); err != nil {
		t.Fatal(err)
	}
	got := ops.attrs(t, "event.publish.OrderPlaced")
	want := map[string]string{"event.type": "OrderPlaced", "correlation_id": "corr-7", "message_type": "OrderPlaced"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestBus_hook_refusal_stops_send(t *testing.T) {
	reg := hooks.NewRegistry()
	refused := errors.New("rate limited")
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return refused
	}))
	pub := &capturePublisher{}
	commands, events := newBuses(t, cqrsbus.New(cqrsbus.Config{}), reg, pub, nil, nil)
	if err := commands.Send(context.Background(), &PlaceOrder{}); !errors.Is(err, refused) {
		t.Errorf("Send error = %v, want %v", err, refused)
	}
	if err := events.Publish(context.Background(), &OrderPlaced{}); !errors.Is(err, refused) {
		t.Errorf("Publish error = %v, want %v", err, refused)
	}
	if len(pub.msgs) != 0 {
		t.Errorf("%d messages published despite the refusal", len(pub.msgs))
	}
}

func TestBus_registry_from_context(t *testing.T) {
	reg, ops := newOpRecorder(t)
	pub := &capturePublisher{}
	commands, _ := newBuses(t, cqrsbus.New(cqrsbus.Config{}), nil, pub, nil, nil)
	if err := commands.Send(context.Background(), &PlaceOrder{}); err != nil {
		t.Fatal(err)
	}
	if err := commands.Send(hooks.WithRegistry(context.Background(), reg), &PlaceOrder{}); err != nil {
		t.Fatal(err)
	}
	if got := ops.names(); len(got) != 1 {
		t.Errorf("operations = %q, want one (only the send whose context carried the registry)", got)
	}
}

func TestNewBus_invalid_config(t *testing.T) {
	inner, err := cqrs.NewCommandBusWithConfig(&capturePublisher{}, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return "t", nil },
		Marshaler:            marshaler,
	})
	if err != nil {
		t.Fatal(err)
	}
	innerEvents, err := cqrs.NewEventBusWithConfig(&capturePublisher{}, cqrs.EventBusConfig{
		GeneratePublishTopic: func(cqrs.GenerateEventPublishTopicParams) (string, error) { return "t", nil },
		Marshaler:            marshaler,
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		create  func() error
		wantErr string
	}{
		{"command bus without marshaler", func() error {
			_, err := cqrsbus.NewCommandBus(inner, cqrsbus.CommandBusConfig{})
			return err
		}, "invalid config: missing Marshaler"},
		{"nil command bus", func() error {
			_, err := cqrsbus.NewCommandBus(nil, cqrsbus.CommandBusConfig{Marshaler: marshaler})
			return err
		}, "missing bus"},
		{"event bus without marshaler", func() error {
			_, err := cqrsbus.NewEventBus(innerEvents, cqrsbus.EventBusConfig{})
			return err
		}, "invalid config: missing Marshaler"},
		{"nil event bus", func() error {
			_, err := cqrsbus.NewEventBus(nil, cqrsbus.EventBusConfig{Marshaler: marshaler})
			return err
		}, "missing bus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.create()
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestOnReply_stamps_reply(t *testing.T) {
	obs := cqrsbus.New(cqrsbus.Config{Propagator: propagator()})
	query := message.NewMessage("query-uuid", nil)
	query.Metadata.Set(contract.CorrelationIDKey, "corr-q")
	query.Metadata.Set(contract.NameKey, "GetOrderStatus")
	reply := message.NewMessage("reply-uuid", nil)
	calls := 0
	err := obs.OnReply(func(msg *message.Message, p requestreply.PubSubBackendOnCommandProcessedParams) error {
		calls++
		return nil
	})(reply, requestreply.PubSubBackendOnCommandProcessedParams{
		PubSubBackendPublishParams: requestreply.PubSubBackendPublishParams{CommandMessage: query},
	})
	if err != nil || calls != 1 {
		t.Fatalf("err %v, user function ran %d times; want nil and 1", err, calls)
	}
	for k, v := range map[string]string{
		contract.MessageKindKey:   "reply",
		contract.CorrelationIDKey: "corr-q",
		contract.CausationIDKey:   "query-uuid",
		contract.NameKey:          "GetOrderStatus",
	} {
		if got := reply.Metadata.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// OnSend writes the caller's trace context; a watermillobs publisher then
// replaces it with its send span's, so consumers are children of the send.
func TestSend_publisher_refines_trace_context(t *testing.T) {
	tp, rec := newTracing(t)
	obs := cqrsbus.New(cqrsbus.Config{TracerProvider: tp, Propagator: propagator()})
	ctx, span := tp.Tracer("test").Start(context.Background(), "entry")
	msg := message.NewMessage("uuid-1", nil)
	msg.SetContext(ctx)
	if err := obs.OnSend(nil)(cqrs.CommandBusOnSendParams{CommandName: "PlaceOrder", Message: msg}); err != nil {
		t.Fatal(err)
	}
	entry := span.SpanContext()
	if want := "00-" + entry.TraceID().String() + "-" + entry.SpanID().String() + "-01"; msg.Metadata.Get(contract.TraceparentKey) != want {
		t.Fatalf("OnSend traceparent = %q, want the caller's %q", msg.Metadata.Get(contract.TraceparentKey), want)
	}
	pub := watermillobs.NewPublisher(nopPublisher{}, watermillobs.WithTracerProvider(tp), watermillobs.WithPropagators(propagator()))
	if err := pub.Publish("commands", msg); err != nil {
		t.Fatal(err)
	}
	span.End()
	var send trace.SpanContext
	for _, s := range rec.Ended() {
		if s.Name() == "send commands" {
			send = s.SpanContext()
		}
	}
	if want := "00-" + send.TraceID().String() + "-" + send.SpanID().String() + "-01"; msg.Metadata.Get(contract.TraceparentKey) != want {
		t.Errorf("published traceparent = %q, want the send span's %q", msg.Metadata.Get(contract.TraceparentKey), want)
	}
	if msg.Metadata.Get(contract.CorrelationIDKey) == "" || msg.Metadata.Get(contract.PublishedAtKey) == "" {
		t.Errorf("correlation_id or published_at missing: %v", msg.Metadata)
	}
}

type nopPublisher struct{}

func (nopPublisher) Publish(string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                              { return nil }

// A hook that panics around a send, before or after next: the message is
// sent exactly once and the caller sees no error, so its retry cannot send
// it twice.
func TestBuses_hook_panic_sends_once(t *testing.T) {
	for _, when := range []string{"before next", "after next"} {
		t.Run(when, func(t *testing.T) {
			reg := hooks.NewRegistry()
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				if when == "before next" {
					panic("hook bug")
				}
				_ = next(ctx)
				panic("hook bug")
			}), hooks.WithOperations("command.send.*", "event.publish.*"))
			pub := &capturePublisher{}
			topic := func(string) (string, error) { return "t", nil }
			inner, err := cqrs.NewCommandBusWithConfig(pub, cqrs.CommandBusConfig{
				GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return topic("") },
				Marshaler:            marshaler,
			})
			if err != nil {
				t.Fatal(err)
			}
			commands, err := cqrsbus.NewCommandBus(inner, cqrsbus.CommandBusConfig{Marshaler: marshaler, Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			innerEvents, err := cqrs.NewEventBusWithConfig(pub, cqrs.EventBusConfig{
				GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) { return topic("") },
				Marshaler:            marshaler,
			})
			if err != nil {
				t.Fatal(err)
			}
			events, err := cqrsbus.NewEventBus(innerEvents, cqrsbus.EventBusConfig{Marshaler: marshaler, Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			if err := commands.Send(context.Background(), &PlaceOrder{}); err != nil {
				t.Errorf("Send error = %v, want none: a hook's bug must not fail the send", err)
			}
			if err := events.Publish(context.Background(), &OrderPlaced{}); err != nil {
				t.Errorf("Publish error = %v, want none", err)
			}
			pub.mu.Lock()
			defer pub.mu.Unlock()
			if len(pub.msgs) != 2 {
				t.Errorf("%d messages published, want exactly 2 (one command, one event)", len(pub.msgs))
			}
		})
	}
}
