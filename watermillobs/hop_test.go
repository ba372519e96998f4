package watermillobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// TestHop_republished_consumed_message: a consumed message published again
// while handled (returned by the handler, poison-queued, re-published) keeps
// its causation and correlation IDs and gets the new send span as trace
// parent.
func TestHop_republished_consumed_message(t *testing.T) {
	for _, how := range []string{"returned", "poison queue", "republished"} {
		t.Run(how, func(t *testing.T) {
			p := newE2EProcess(t)
			pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
			t.Cleanup(func() { _ = pubsub.Close() })
			prefix := testsvc.Prefix(t)
			in, next := prefix+"in", prefix+"next"
			r := testsvc.NewRouter(t)
			if err := instrument(r, watermillobs.InstrumentConfig{}, p.opts...); err != nil {
				t.Fatal(err)
			}
			pub := watermillobs.NewPublisher(pubsub, p.opts...)
			if how == "poison queue" {
				pq, err := middleware.PoisonQueue(pub, next)
				if err != nil {
					t.Fatal(err)
				}
				r.AddMiddleware(pq)
			}
			r.AddHandler("first", in, pubsub, next, pubsub, func(msg *message.Message) ([]*message.Message, error) {
				switch how {
				case "returned":
					return []*message.Message{msg}, nil
				case "republished":
					return nil, pub.Publish(next, msg)
				}
				return nil, errors.New("poison")
			})
			inbox := newE2EInbox()
			r.AddConsumerHandler("second", next, pubsub, func(msg *message.Message) error {
				inbox.record(msg)
				return nil
			})
			testsvc.RunRouter(t, r)

			first := message.NewMessage(watermill.NewUUID(), nil)
			first.Metadata.Set(contract.CorrelationIDKey, "corr-1")
			first.Metadata.Set(contract.CausationIDKey, "cause-0")
			if err := watermillobs.NewPublisher(pubsub, p.opts...).Publish(in, first); err != nil {
				t.Fatal(err)
			}
			got := inbox.wait(t, 1)[0]
			all := e2eWaitSpans(t, p.rec, 4)
			if got.uuid != first.UUID {
				t.Fatalf("next handler got %s, want the same message %s", got.uuid, first.UUID)
			}
			if v := got.metadata[contract.CausationIDKey]; v != "cause-0" {
				t.Errorf("causation_id = %q, want it kept (cause-0), never the message's own UUID", v)
			}
			if v := got.metadata[contract.CorrelationIDKey]; v != "corr-1" {
				t.Errorf("correlation_id = %q, want corr-1", v)
			}
			send := e2eOnlySpanNamed(t, all, "send "+next)
			process := e2eOnlySpanNamed(t, all, "process "+next)
			if tp := got.metadata[contract.TraceparentKey]; !containsSpanID(tp, send.SpanContext().SpanID().String()) {
				t.Errorf("traceparent on the wire %q, want the new send span %s", tp, send.SpanContext().SpanID())
			}
			e2eWantChild(t, process, send)
			e2eWantChild(t, send, e2eOnlySpanNamed(t, all, "process "+in))
		})
	}
}

func containsSpanID(traceparent, spanID string) bool {
	return len(traceparent) == 55 && traceparent[36:52] == spanID
}

// TestMessagingSystem_readme_quickstart: with the README's wiring (promobs
// backend), the send span of a handler-returned message names the
// transport, never a decorator.
func TestMessagingSystem_readme_quickstart(t *testing.T) {
	for _, tr := range e2eTransports {
		t.Run(tr.name, func(t *testing.T) {
			tport := tr.new(t)
			p := newE2EProcess(t)
			metrics, err := promobs.New(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			r := testsvc.NewRouter(t)
			if err := instrument(r, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{metrics}}, p.opts...); err != nil {
				t.Fatal(err)
			}
			in, out := tport.topic("in"), tport.topic("out")
			inbox := newE2EInbox()
			r.AddHandler("first", in, tport.sub, out, tport.pubB, func(msg *message.Message) ([]*message.Message, error) {
				return []*message.Message{message.NewMessage(watermill.NewUUID(), nil)}, nil
			})
			r.AddConsumerHandler("second", out, tport.sub, func(msg *message.Message) error {
				inbox.record(msg)
				return nil
			})
			testsvc.RunRouter(t, r)
			if err := tport.pubA.Publish(in, message.NewMessage(watermill.NewUUID(), nil)); err != nil {
				t.Fatal(err)
			}
			inbox.wait(t, 1)
			all := e2eWaitSpans(t, p.rec, 3)
			for _, name := range []string{"send " + out, "process " + in, "process " + out} {
				s := e2eOnlySpanNamed(t, all, name)
				if v, _ := e2eStringAttr(s, semconv.MessagingSystemKey); v != tport.system {
					t.Errorf("%s: messaging.system = %q, want %q", name, v, tport.system)
				}
			}
		})
	}
}

// TestMessagingSystem_beneath_decorators: a publisher wrapped in the
// metrics decorator first (README step 3) still names its transport, and
// so does a subscriber wrapped twice.
func TestMessagingSystem_beneath_decorators(t *testing.T) {
	for _, tr := range e2eTransports {
		t.Run(tr.name, func(t *testing.T) {
			tport := tr.new(t)
			p := newE2EProcess(t)
			metrics, err := promobs.New(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			pub := watermillobs.NewPublisher(metrics.DecoratePublisher(tport.pubA), p.opts...)
			sub := watermillobs.NewSubscriber(watermillobs.NewSubscriber(tport.sub, p.opts...), p.opts...)
			topic := tport.topic("beneath")
			msgs, err := sub.Subscribe(context.Background(), topic)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), nil)); err != nil {
				t.Fatal(err)
			}
			select {
			case msg := <-msgs:
				msg.Ack()
			case <-time.After(10 * time.Second):
				t.Fatal("no message delivered")
			}
			all := e2eWaitSpans(t, p.rec, 3)
			for _, name := range []string{"send " + topic, "receive " + topic} {
				found := 0
				for _, s := range all {
					if s.Name() != name {
						continue
					}
					found++
					if v, _ := e2eStringAttr(s, semconv.MessagingSystemKey); v != tport.system {
						t.Errorf("%s: messaging.system = %q, want %q", name, v, tport.system)
					}
				}
				if found == 0 {
					t.Errorf("no span %q among %d", name, len(all))
				}
			}
		})
	}
}
