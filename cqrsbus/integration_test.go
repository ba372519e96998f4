package cqrsbus_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// redisTransport is real Redis Streams: a publisher and, per handler, a
// subscriber in a consumer group of the handler's name. Every publisher and
// subscriber has a client of its own, as closing them closes it.
func redisTransport(t testing.TB) transport {
	t.Helper()
	_, prefix := testsvc.RedisPrefix(t)
	pub := testsvc.RedisPublisher(t)
	return transport{
		pub: pub,
		sub: func(t testing.TB, handler string) message.Subscriber {
			return testsvc.RedisSubscriber(t, prefix+handler)
		},
		prefix: prefix,
	}
}

// namedGroupHandler gives a group handler a name for the hook operations.
type namedGroupHandler struct {
	cqrs.GroupEventHandler
	name string
}

func (h namedGroupHandler) HandlerName() string { return h.name }

// step is what one handler saw of the message it handled.
type step struct {
	handler                string
	uuid                   string
	metadata               message.Metadata
	correlation, causation string
	traceID                string
}

type journal struct {
	mu    sync.Mutex
	steps map[string]step
	reply *message.Message
	err   error
	done  chan struct{}
}

func (j *journal) record(ctx context.Context, handler string) {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.steps[handler] = step{
		handler:     handler,
		uuid:        msg.UUID,
		metadata:    maps.Clone(msg.Metadata),
		correlation: hooks.CorrelationID(ctx),
		causation:   hooks.CausationID(ctx),
		traceID:     trace.SpanContextFromContext(ctx).TraceID().String(),
	}
}

// TestIntegration_order_flow_redis runs PlaceOrder -> OrderPlaced (two
// handlers) -> ReserveStock -> GetOrderStatus (request/reply) over Redis
// Streams and checks correlation, the causation chain, the single trace,
// the kind-aware metrics and the JSON logs.
func TestIntegration_order_flow_redis(t *testing.T) {
	t.Parallel()
	runOrderFlow(t)
}

func runOrderFlow(t *testing.T) {
	s := newService(t, redisTransport(t), serviceOptions{})
	j := &journal{steps: map[string]step{}, done: make(chan struct{})}

	replyTimeout := waitTimeout
	backendCfg := requestreply.PubSubBackendConfig{
		Publisher: watermillobs.NewPublisher(s.tr.pub,
			watermillobs.WithTracerProvider(s.tp), watermillobs.WithPropagators(propagator())),
		SubscriberConstructor: func(p requestreply.PubSubBackendSubscribeParams) (message.Subscriber, error) {
			// Replies are consumed outside the router: NewSubscriber gives
			// them a receive span and their conversation in the context.
			return watermillobs.NewSubscriber(testsvc.RedisSubscriber(t, s.topic("caller")),
				watermillobs.WithTracerProvider(s.tp), watermillobs.WithPropagators(propagator())), nil
		},
		GeneratePublishTopic: func(p requestreply.PubSubBackendPublishParams) (string, error) {
			return s.topic("replies." + string(p.OperationID)), nil
		},
		GenerateSubscribeTopic: func(p requestreply.PubSubBackendSubscribeParams) (string, error) {
			return s.topic("replies." + string(p.OperationID)), nil
		},
		ListenForReplyTimeout: &replyTimeout,
	}
	s.obs.InstrumentPubSubBackendConfig(&backendCfg)
	backend, err := requestreply.NewPubSubBackend[OrderStatus](backendCfg, requestreply.BackendPubsubJSONMarshaler[OrderStatus]{})
	if err != nil {
		t.Fatal(err)
	}

	err = s.cmdProc.AddHandlers(
		cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
			j.record(ctx, "place_order")
			return s.events.Publish(ctx, &OrderPlaced{OrderID: cmd.OrderID})
		}),
		cqrs.NewCommandHandler("reserve_stock", func(ctx context.Context, cmd *ReserveStock) error {
			j.record(ctx, "reserve_stock")
			reply, err := requestreply.SendWithReply[OrderStatus](ctx, s.commands.Queries(), backend, &GetOrderStatus{OrderID: cmd.OrderID})
			j.mu.Lock()
			defer j.mu.Unlock()
			if j.reply == nil && j.err == nil {
				j.reply, j.err = reply.NotificationMessage, err
				if err == nil {
					j.err = reply.Error
				}
				close(j.done)
			}
			return nil
		}),
		requestreply.NewCommandHandlerWithResult[GetOrderStatus, OrderStatus]("order_status", backend,
			func(ctx context.Context, q *GetOrderStatus) (OrderStatus, error) {
				j.record(ctx, "order_status")
				return OrderStatus{Status: "placed"}, nil
			}),
	)
	if err != nil {
		t.Fatal(err)
	}
	err = s.group.AddHandlersGroup("orders",
		namedGroupHandler{name: "reserve_stock_sender", GroupEventHandler: cqrs.NewGroupEventHandler(func(ctx context.Context, e *OrderPlaced) error {
			j.record(ctx, "reserve_stock_sender")
			return s.commands.Send(ctx, &ReserveStock{OrderID: e.OrderID})
		})},
		namedGroupHandler{name: "notify_customer", GroupEventHandler: cqrs.NewGroupEventHandler(func(ctx context.Context, e *OrderPlaced) error {
			j.record(ctx, "notify_customer")
			return nil
		})},
	)
	if err != nil {
		t.Fatal(err)
	}
	// The group subscribes to the OrderPlaced topic of the event bus.
	testsvc.RunRouter(t, s.router)

	// The HTTP-like entry point: a server span and a correlation ID.
	correlationID := hooks.NewCorrelationID()
	ctx, entry := s.tp.Tracer("http").Start(context.Background(), "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	ctx = hooks.WithCorrelationID(ctx, correlationID)
	if err := s.commands.Send(ctx, &PlaceOrder{OrderID: "42"}); err != nil {
		t.Fatal(err)
	}
	entry.End()
	traceID := entry.SpanContext().TraceID().String()

	select {
	case <-j.done:
	case <-time.After(waitTimeout):
		t.Fatalf("no reply after %s; handled: %v", waitTimeout, j.steps)
	}
	if j.err != nil {
		t.Fatalf("query failed: %v", j.err)
	}
	// Every router handler done: one observation per handled message.
	eventually(t, "every handled message to be counted", func() bool {
		return s.kindTotal(t, "command") == 2 && s.kindTotal(t, "event") == 1 && s.kindTotal(t, "query") == 1
	})

	j.mu.Lock()
	steps := maps.Clone(j.steps)
	reply := j.reply
	j.mu.Unlock()

	// Correlation, kinds and the causation chain.
	chain := []struct {
		handler, kind, name, causedBy string
	}{
		{"place_order", "command", "PlaceOrder", ""},
		{"reserve_stock_sender", "event", "OrderPlaced", "place_order"},
		{"notify_customer", "event", "OrderPlaced", "place_order"},
		{"reserve_stock", "command", "ReserveStock", "reserve_stock_sender"},
		{"order_status", "query", "GetOrderStatus", "reserve_stock"},
	}
	for _, c := range chain {
		st, ok := steps[c.handler]
		if !ok {
			t.Errorf("%s never ran", c.handler)
			continue
		}
		md := st.metadata
		if md.Get(contract.CorrelationIDKey) != correlationID || st.correlation != correlationID {
			t.Errorf("%s: correlation metadata %q context %q, want %q", c.handler, md.Get(contract.CorrelationIDKey), st.correlation, correlationID)
		}
		if md.Get(contract.MessageKindKey) != c.kind || md.Get(contract.NameKey) != c.name {
			t.Errorf("%s: kind %q name %q, want %q %q", c.handler, md.Get(contract.MessageKindKey), md.Get(contract.NameKey), c.kind, c.name)
		}
		wantCause := ""
		if c.causedBy != "" {
			wantCause = steps[c.causedBy].uuid
		}
		if got := md.Get(contract.CausationIDKey); got != wantCause {
			t.Errorf("%s: causation_id %q, want %q (the message %s handled)", c.handler, got, wantCause, c.causedBy)
		}
		if st.causation != st.uuid {
			t.Errorf("%s: context causation %q, want the handled message's UUID %q", c.handler, st.causation, st.uuid)
		}
		if st.traceID != traceID {
			t.Errorf("%s: handled in trace %s, want the entry's %s", c.handler, st.traceID, traceID)
		}
	}
	if reply == nil {
		t.Fatal("no reply message")
	}
	if reply.Metadata.Get(contract.CorrelationIDKey) != correlationID ||
		reply.Metadata.Get(contract.CausationIDKey) != steps["order_status"].uuid ||
		reply.Metadata.Get(contract.MessageKindKey) != "reply" {
		t.Errorf("reply metadata %v: want correlation %s, causation = the query %s, kind reply",
			reply.Metadata, correlationID, steps["order_status"].uuid)
	}

	// One trace holds the whole flow.
	want := []string{"cqrs.PlaceOrder", "cqrs.ReserveStock", "cqrs.GetOrderStatus",
		"send " + s.topic("commands.PlaceOrder"), "send " + s.topic("events.OrderPlaced"),
		"send " + s.topic("commands.ReserveStock"), "send " + s.topic("commands.GetOrderStatus"),
		"process " + s.topic("commands.PlaceOrder"), "process " + s.topic("events.OrderPlaced"),
		"process " + s.topic("commands.ReserveStock"), "process " + s.topic("commands.GetOrderStatus"),
	}
	eventually(t, "every span to end", func() bool {
		for _, name := range want {
			if len(spansNamed(s.spans, name)) == 0 {
				return false
			}
		}
		return len(spansNamed(s.spans, "cqrs.OrderPlaced")) == 2
	})
	// Both group handlers run under the one consumer span of OrderPlaced.
	processPlaced := spansNamed(s.spans, "process "+s.topic("events.OrderPlaced"))[0]
	for _, sp := range spansNamed(s.spans, "cqrs.OrderPlaced") {
		if sp.Parent().SpanID() != processPlaced.SpanContext().SpanID() {
			t.Errorf("cqrs.OrderPlaced of %s has parent %s, want the consumer span %s",
				attr(sp, "cqrs.handler"), sp.Parent().SpanID(), processPlaced.SpanContext().SpanID())
		}
	}
	for _, sp := range s.spans.Ended() {
		if sp.SpanContext().TraceID().String() != traceID {
			t.Errorf("span %q is in trace %s, want %s", sp.Name(), sp.SpanContext().TraceID(), traceID)
		}
	}
	replyTopic := s.topic("replies." + reply.Metadata.Get(requestreply.OperationIDMetadataKey))
	replySends := 0
	for _, sp := range s.spans.Ended() {
		// Replies go to a topic per request: spans are named by the
		// template, the raw topic stays in messaging.destination.name.
		if sp.Name() == "send "+contract.TemporaryDestination && attr(sp, "messaging.destination.name") == replyTopic {
			if attr(sp, "messaging.destination.temporary") != "true" {
				t.Errorf("reply send span lacks messaging.destination.temporary")
			}
			replySends++
			receives := 0
			for _, r := range s.spans.Ended() {
				if r.Name() == "receive "+contract.TemporaryDestination && attr(r, "messaging.destination.name") == replyTopic && r.Parent().SpanID() == sp.SpanContext().SpanID() {
					receives++
				}
			}
			if receives != 1 {
				t.Errorf("%d receive spans under the reply's send span, want 1", receives)
			}
		}
	}
	// The consumer of PlaceOrder continues the send span: the publisher
	// replaced the traceparent that OnSend wrote from the entry span.
	processPlace := spansNamed(s.spans, "process "+s.topic("commands.PlaceOrder"))[0]
	send := spansNamed(s.spans, "send "+s.topic("commands.PlaceOrder"))[0]
	wantParent := send.SpanContext().SpanID()
	if send.Parent().SpanID() != entry.SpanContext().SpanID() {
		t.Errorf("send span of PlaceOrder has parent %s, want the entry span", send.Parent().SpanID())
	}
	if processPlace.Parent().SpanID() != wantParent {
		t.Errorf("process span of PlaceOrder has parent %s, want %s", processPlace.Parent().SpanID(), wantParent)
	}
	if replySends != 1 {
		t.Errorf("want the reply's send span in the trace; spans %q", spanNames(s.spans.Ended()))
	}

	// Metrics: exactly the messages sent, by kind.
	for _, c := range []struct {
		kind, typ string
	}{{"command", "PlaceOrder"}, {"command", "ReserveStock"}, {"event", "OrderPlaced"}, {"query", "GetOrderStatus"}} {
		if got := s.handledTotal(t, c.kind, c.typ, "success"); got != 1 {
			t.Errorf("cqrs_message_total{kind=%q,message_type=%q,outcome=success} = %v, want 1", c.kind, c.typ, got)
		}
	}
	s.lint(t)

	// Logs: one record per handled message with the reference's fields.
	for _, c := range []struct{ typ, kind string }{{"PlaceOrder", "command"}, {"OrderPlaced", "event"}, {"ReserveStock", "command"}, {"GetOrderStatus", "query"}} {
		recs := s.logs.handled(t, c.typ)
		if len(recs) != 1 {
			t.Errorf("%d log records for %s, want 1", len(recs), c.typ)
			continue
		}
		r := recs[0]
		if r["kind"] != c.kind || r["outcome"] != "success" || r["correlation_id"] != correlationID || r["trace_id"] != traceID {
			t.Errorf("%s log record %v", c.typ, r)
		}
		if _, ok := r["duration_ms"].(float64); !ok {
			t.Errorf("%s log record has no numeric duration_ms: %v", c.typ, r)
		}
	}

	// Hook operations of the whole flow, each with the correlation ID.
	for _, name := range []string{
		"command.send.PlaceOrder", "command.handle.PlaceOrder", "event.publish.OrderPlaced",
		"event.dispatch.OrderPlaced", "event.handler.OrderPlaced.reserve_stock_sender",
		"event.handler.OrderPlaced.notify_customer", "command.send.ReserveStock",
		"command.handle.ReserveStock", "query.send.GetOrderStatus", "query.handle.GetOrderStatus",
	} {
		if got := s.ops.attrs(t, name)["correlation_id"]; got != correlationID {
			t.Errorf("operation %s: correlation_id %q, want %q", name, got, correlationID)
		}
	}
}
