package watermillobs_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// fakePublisher records what reaches it, optionally failing.
type fakePublisher struct {
	mu    sync.Mutex
	calls [][]*message.Message
	err   error
}

func (f *fakePublisher) Publish(topic string, msgs ...*message.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(msgs))
	return f.err
}

func (f *fakePublisher) Close() error { return nil }

func TestPublisher_spans_and_metadata(t *testing.T) {
	rec, tp, opts := newTracing(t)
	fake := &fakePublisher{}
	pub := watermillobs.NewPublisher(fake, append(opts, watermillobs.WithHookRegistry(hooks.NewRegistry()))...)

	parentCtx, parent := startSpan(tp, "http request")
	parentCtx = hooks.WithCorrelationID(parentCtx, "corr-9")
	m1 := message.NewMessage("m1", []byte("a"))
	m1.SetContext(parentCtx)
	m2 := message.NewMessage("m2", []byte("b"))
	m2.Metadata = nil
	m2.SetContext(parentCtx)
	if err := pub.Publish("orders", m1, m2); err != nil {
		t.Fatal(err)
	}
	parent.End()

	if len(fake.calls) != 1 || len(fake.calls[0]) != 2 {
		t.Fatalf("wrapped publisher calls = %d, want one call with both messages", len(fake.calls))
	}
	var sends []string
	for _, s := range rec.Ended() {
		if s.Name() != "send orders" {
			continue
		}
		sends = append(sends, s.Name())
		if s.SpanKind() != trace.SpanKindProducer || s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("send span kind %v, parent %v", s.SpanKind(), s.Parent().SpanID())
		}
		id, _ := spanAttr(s, "messaging.message.id")
		var m *message.Message
		switch id.AsString() {
		case "m1":
			m = m1
		case "m2":
			m = m2
		default:
			t.Fatalf("unexpected message id %q", id.AsString())
		}
		want := "00-" + s.SpanContext().TraceID().String() + "-" + s.SpanContext().SpanID().String() + "-01"
		if got := m.Metadata.Get(contract.TraceparentKey); got != want {
			t.Errorf("%s traceparent = %q, want its send span %q", id.AsString(), got, want)
		}
		if m.Metadata.Get(contract.CorrelationIDKey) != "corr-9" {
			t.Errorf("%s correlation = %q", id.AsString(), m.Metadata.Get(contract.CorrelationIDKey))
		}
		if _, ok := contract.PublishedAt(m); !ok {
			t.Errorf("%s has no published_at", id.AsString())
		}
	}
	if len(sends) != 2 {
		t.Errorf("%d send spans, want 2", len(sends))
	}
}

func TestPublisher_error_marks_spans(t *testing.T) {
	rec, _, opts := newTracing(t)
	errBroker := errors.New("broker down")
	pub := watermillobs.NewPublisher(&fakePublisher{err: errBroker}, append(opts, watermillobs.WithHookRegistry(hooks.NewRegistry()))...)
	if err := pub.Publish("orders", message.NewMessage("m", nil)); !errors.Is(err, errBroker) {
		t.Fatalf("error = %v", err)
	}
	if s := spanByName(t, rec, "send orders"); s.Status().Code != codes.Error {
		t.Errorf("status = %+v", s.Status())
	}
}

// A batch is one hook operation around one broker call; a hook's refusal
// publishes nothing and reaches the caller and every message's span.
func TestPublisher_one_operation_per_call(t *testing.T) {
	rec, _, opts := newTracing(t)
	reg := hooks.NewRegistry()
	var ops []hooks.Operation
	errLimited := errors.New("rate limited")
	refuse := false
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		ops = append(ops, op)
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("hook context has no send span")
		}
		if refuse {
			return errLimited
		}
		return next(ctx)
	}), hooks.WithOperations("publisher.publish.*"))
	fake := &fakePublisher{}
	pub := watermillobs.NewPublisher(fake, append(opts, watermillobs.WithHookRegistry(reg))...)

	batch := func() []*message.Message {
		ctx := hooks.WithCorrelationID(context.Background(), "c")
		msgs := []*message.Message{message.NewMessage("m1", nil), message.NewMessage("m2", nil), message.NewMessage("m3", nil)}
		for _, m := range msgs {
			m.SetContext(ctx)
		}
		return msgs
	}
	if err := pub.Publish("orders", batch()...); err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Name != "publisher.publish.orders" {
		t.Fatalf("operations = %+v, want one publisher.publish.orders", ops)
	}
	if n, _ := ops[0].Attr("messaging.batch.message_count"); n.Int64() != 3 {
		t.Errorf("message count = %v, want 3", n)
	}
	if c, _ := ops[0].Attr("correlation_id"); c.String() != "c" {
		t.Errorf("correlation_id = %v, want the batch's shared c", c)
	}
	if _, ok := ops[0].Attr("message.id"); ok {
		t.Error("a batch operation carries one message's ID")
	}
	if len(fake.calls) != 1 || len(fake.calls[0]) != 3 {
		t.Fatalf("broker calls = %d, want one call with 3 messages", len(fake.calls))
	}

	refuse = true
	rec.Reset()
	err := pub.Publish("orders", batch()...)
	if !errors.Is(err, errLimited) {
		t.Fatalf("error = %v, want the hook's refusal", err)
	}
	if len(fake.calls) != 1 {
		t.Errorf("a refused batch reached the broker")
	}
	ended := rec.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans, want 3 send spans", len(ended))
	}
	for _, s := range ended {
		if s.Status().Code != codes.Error {
			t.Errorf("span %s status = %+v, want the batch's error", s.Name(), s.Status())
		}
	}
}

// The hook attributes carry the message type where the whole call shares
// it, so WithMessageTypes filters work on publishing too.
func TestPublisher_message_type_filter(t *testing.T) {
	reg := hooks.NewRegistry()
	var n int
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		n++
		return next(ctx)
	}), hooks.WithMessageTypes("OrderPlaced"))
	pub := watermillobs.NewPublisher(&fakePublisher{}, watermillobs.WithHookRegistry(reg))
	typed := func(uuid, typ string) *message.Message {
		m := message.NewMessage(uuid, nil)
		m.Metadata.Set(contract.NameKey, typ)
		return m
	}
	_ = pub.Publish("orders", typed("a", "OrderPlaced"), typed("b", "OrderPlaced"))
	_ = pub.Publish("orders", typed("c", "OrderCancelled"))
	_ = pub.Publish("orders", typed("d", "OrderPlaced"), typed("e", "OrderCancelled"))
	if n != 1 {
		t.Errorf("hook ran %d times, want 1 (only the call whose messages are all OrderPlaced)", n)
	}
}

func TestPublisherDecorator_nil(t *testing.T) {
	if _, err := watermillobs.PublisherDecorator()(nil); !errors.Is(err, watermillobs.ErrNilPublisher) {
		t.Errorf("error = %v", err)
	}
}
