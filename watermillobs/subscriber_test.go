package watermillobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func TestSubscriber_delivers_with_context(t *testing.T) {
	rec, _, opts := newTracing(t)
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubSub.Close() })
	sub := watermillobs.NewSubscriber(pubSub, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "replies")
	if err != nil {
		t.Fatal(err)
	}

	pub := watermillobs.NewPublisher(pubSub, append(opts, watermillobs.WithHookRegistry(hooks.NewRegistry()))...)
	sent := message.NewMessage("reply-1", []byte("{}"))
	sent.SetContext(hooks.WithCorrelationID(context.Background(), "corr-5"))
	hostile := message.NewMessage("reply-2", nil)
	hostile.Metadata.Set(contract.TraceparentKey, "garbage")
	hostile.Metadata.Set(contract.CorrelationIDKey, "\xff")
	if err := pub.Publish("replies", sent); err != nil {
		t.Fatal(err)
	}
	if err := pubSub.Publish("replies", hostile); err != nil {
		t.Fatal(err)
	}

	got := map[string]*message.Message{}
	for len(got) < 2 {
		select {
		case msg := <-msgs:
			got[msg.UUID] = msg
			msg.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("delivered %d of 2 messages", len(got))
		}
	}
	for _, id := range []string{"reply-1", "reply-2"} {
		msg := got[id]
		if msg == nil {
			t.Fatalf("%s not delivered", id)
		}
		vars := hooks.Snapshot(msg.Context())
		if vars.CausationID != id || len(vars.CorrelationID) == 0 || vars.CorrelationID == "\xff" {
			t.Errorf("%s: context carries %+v", id, vars)
		}
		if !trace.SpanContextFromContext(msg.Context()).IsValid() {
			t.Errorf("%s: no span in the context", id)
		}
	}
	if c := hooks.CorrelationID(got["reply-1"].Context()); c != "corr-5" {
		t.Errorf("correlation %q, want corr-5", c)
	}

	send := spanByName(t, rec, "send replies")
	var receives []trace.SpanContext
	for _, s := range rec.Ended() {
		if s.Name() != "receive replies" {
			continue
		}
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("receive span kind %v", s.SpanKind())
		}
		if id, _ := spanAttr(s, "messaging.message.id"); id.AsString() == "reply-1" && s.Parent().SpanID() != send.SpanContext().SpanID() {
			t.Errorf("receive span of reply-1 is not a child of its send span")
		}
		receives = append(receives, s.SpanContext())
	}
	if len(receives) != 2 {
		t.Errorf("%d receive spans, want 2", len(receives))
	}

	cancel()
	select {
	case _, open := <-msgs:
		if open {
			t.Error("message delivered after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Error("channel not closed after the subscription's context was cancelled")
	}
}

func TestSubscriberDecorator_nil(t *testing.T) {
	if _, err := watermillobs.SubscriberDecorator()(nil); !errors.Is(err, watermillobs.ErrNilSubscriber) {
		t.Errorf("error = %v", err)
	}
}

// An unread subscription must not keep Close from closing its channel:
// Watermill's suite and routers rely on the channel being closed once
// Close returns.
func TestSubscriber_Close_closes_unread_channel(t *testing.T) {
	pubSub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	sub := watermillobs.NewSubscriber(pubSub)
	msgs, err := sub.Subscribe(context.Background(), "unread")
	if err != nil {
		t.Fatal(err)
	}
	if err := pubSub.Publish("unread", message.NewMessage("1", nil)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	// Close has returned: the channel must be closed now, not later.
	select {
	case msg, ok := <-msgs:
		if ok {
			t.Fatalf("channel open after Close; got message %v", msg.UUID)
		}
	default:
		t.Fatal("channel not closed when Close returned (blocked)")
	}
}

// A message the subscriber held when Close stopped delivery is nacked, so
// the broker can redeliver it, and Close is idempotent and concurrent-safe.
func TestSubscriber_Close_nacks_undelivered_and_is_idempotent(t *testing.T) {
	held := message.NewMessage("held", nil)
	in := make(chan *message.Message, 1)
	in <- held
	fake := &fakeSubscriber{ch: in}
	sub := watermillobs.NewSubscriber(fake)
	msgs, err := sub.Subscribe(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the forwarder holds the message (blocked on the unread
	// output channel).
	for len(in) > 0 {
		time.Sleep(time.Millisecond)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- sub.Close() }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if fake.closes != 1 {
		t.Errorf("wrapped Close called %d times, want 1", fake.closes)
	}
	if _, ok := <-msgs; ok {
		t.Error("channel still delivering after Close")
	}
	select {
	case <-held.Nacked():
	case <-held.Acked():
		t.Error("undelivered message acked")
	default:
		t.Error("undelivered message neither nacked nor delivered")
	}
	if _, err := sub.Subscribe(context.Background(), "t"); !errors.Is(err, watermillobs.ErrSubscriberClosed) {
		t.Errorf("Subscribe after Close: err = %v, want ErrSubscriberClosed", err)
	}
}

// Cancelling Subscribe's context closes the channel even when the wrapped
// subscriber's channel stays open.
func TestSubscriber_ctx_cancel_closes_channel(t *testing.T) {
	fake := &fakeSubscriber{ch: make(chan *message.Message)}
	sub := watermillobs.NewSubscriber(fake)
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-msgs:
		if ok {
			t.Fatal("message after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after ctx cancel")
	}
	_ = sub.Close()
}

// fakeSubscriber hands out ch and does not close it on Close, like a
// subscriber that relies on its consumer to stop reading.
type fakeSubscriber struct {
	ch     chan *message.Message
	mu     sync.Mutex
	closes int
}

func (f *fakeSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return f.ch, nil
}

func (f *fakeSubscriber) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	return nil
}
