package watermillobs_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

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
	pub := watermillobs.NewPublisher(fake, append(opts, watermillobs.WithRegistry(hooks.NewRegistry()))...)

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
		if got := m.Metadata.Get(watermillobs.TraceparentKey); got != want {
			t.Errorf("%s traceparent = %q, want its send span %q", id.AsString(), got, want)
		}
		if m.Metadata.Get(watermillobs.CorrelationIDKey) != "corr-9" {
			t.Errorf("%s correlation = %q", id.AsString(), m.Metadata.Get(watermillobs.CorrelationIDKey))
		}
		if _, ok := watermillobs.PublishedAt(m); !ok {
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
	pub := watermillobs.NewPublisher(&fakePublisher{err: errBroker}, append(opts, watermillobs.WithRegistry(hooks.NewRegistry()))...)
	if err := pub.Publish("orders", message.NewMessage("m", nil)); !errors.Is(err, errBroker) {
		t.Fatalf("error = %v", err)
	}
	if s := spanByName(t, rec, "send orders"); s.Status().Code != codes.Error {
		t.Errorf("status = %+v", s.Status())
	}
}

func TestPublisher_hook_operation_per_message(t *testing.T) {
	_, _, opts := newTracing(t)
	reg := hooks.NewRegistry()
	var mu sync.Mutex
	var seen []string
	errLimited := errors.New("rate limited")
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		id, _ := op.Attr("message.id")
		corr, _ := op.Attr("correlation_id")
		mu.Lock()
		seen = append(seen, op.Name+" "+id.String()+" "+corr.String())
		mu.Unlock()
		if trace.SpanContextFromContext(ctx).IsValid() == false {
			t.Error("hook context has no send span")
		}
		if id.String() == "m3" {
			return errLimited
		}
		return next(ctx)
	}), hooks.WithOperations("publisher.publish.*"))
	fake := &fakePublisher{}
	pub := watermillobs.NewPublisher(fake, append(opts, watermillobs.WithRegistry(reg))...)

	ctx := hooks.WithCorrelationID(context.Background(), "c")
	msgs := []*message.Message{message.NewMessage("m1", nil), message.NewMessage("m2", nil), message.NewMessage("m3", nil), message.NewMessage("m4", nil)}
	for _, m := range msgs {
		m.SetContext(ctx)
	}
	err := pub.Publish("orders", msgs...)
	if !errors.Is(err, errLimited) {
		t.Fatalf("error = %v, want the hook's refusal", err)
	}
	want := []string{"publisher.publish.orders m1 c", "publisher.publish.orders m2 c", "publisher.publish.orders m3 c"}
	if !slices.Equal(seen, want) {
		t.Errorf("hook saw %q, want %q", seen, want)
	}
	if len(fake.calls) != 2 {
		t.Errorf("%d messages reached the broker, want 2 (stop at the refusal)", len(fake.calls))
	}
}

func TestPublisherDecorator_nil(t *testing.T) {
	if _, err := watermillobs.PublisherDecorator()(nil); !errors.Is(err, watermillobs.ErrNilPublisher) {
		t.Errorf("error = %v", err)
	}
}

// The hook attributes carry the message type, so WithMessageTypes filters
// work on publishing too.
func TestPublisher_message_type_filter(t *testing.T) {
	reg := hooks.NewRegistry()
	var n int
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		n++
		return next(ctx)
	}), hooks.WithMessageTypes("OrderPlaced"))
	pub := watermillobs.NewPublisher(&fakePublisher{}, watermillobs.WithRegistry(reg))
	placed := message.NewMessage("a", nil)
	placed.Metadata.Set(watermillobs.NameKey, "OrderPlaced")
	other := message.NewMessage("b", nil)
	other.Metadata.Set(watermillobs.NameKey, "OrderCancelled")
	_ = pub.Publish("orders", placed, other)
	if n != 1 {
		t.Errorf("hook ran %d times, want 1", n)
	}
}
