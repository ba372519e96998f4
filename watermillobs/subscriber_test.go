package watermillobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

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

	pub := watermillobs.NewPublisher(pubSub, append(opts, watermillobs.WithRegistry(hooks.NewRegistry()))...)
	sent := message.NewMessage("reply-1", []byte("{}"))
	sent.SetContext(hooks.WithCorrelationID(context.Background(), "corr-5"))
	hostile := message.NewMessage("reply-2", nil)
	hostile.Metadata.Set(watermillobs.TraceparentKey, "garbage")
	hostile.Metadata.Set(watermillobs.CorrelationIDKey, "\xff")
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
