package watermillobs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// frameworkRegistry returns a registry with the default framework span
// profile installed, as a production service has it, with spans from tp.
func frameworkRegistry(t *testing.T, tp trace.TracerProvider) *hooks.Registry {
	t.Helper()
	reg := hooks.NewRegistry()
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// Publish(topic, a, b, c) under the default profile: one broker call, one
// span per message, and other hooks still see the operation.
func TestPublisher_batch_one_call_one_span_per_message(t *testing.T) {
	rec, tp, opts := newTracing(t)
	reg := frameworkRegistry(t, tp)
	var observed atomic.Int32
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		observed.Add(1)
		return next(ctx)
	}), hooks.WithOperations("publisher.publish.*"))
	fake := &fakePublisher{}
	pub := watermillobs.NewPublisher(fake, append(opts, watermillobs.WithHookRegistry(reg))...)

	msgs := []*message.Message{message.NewMessage("a", nil), message.NewMessage("b", nil), message.NewMessage("c", nil)}
	if err := pub.Publish("orders", msgs...); err != nil {
		t.Fatal(err)
	}
	if len(fake.calls) != 1 || len(fake.calls[0]) != 3 {
		t.Fatalf("wrapped publisher calls = %v, want one call with 3 messages", len(fake.calls))
	}
	if n := observed.Load(); n != 1 {
		t.Errorf("user hook ran %d times, want once for the call", n)
	}
	perMessage := map[string]int{}
	for _, s := range rec.Ended() {
		if !strings.HasPrefix(s.Name(), "send ") {
			t.Errorf("unexpected span %q: the send spans already stand for the publish", s.Name())
			continue
		}
		id, _ := spanAttr(s, "messaging.message.id")
		perMessage[id.AsString()]++
	}
	for _, m := range msgs {
		if perMessage[m.UUID] != 1 {
			t.Errorf("message %s has %d spans, want 1", m.UUID, perMessage[m.UUID])
		}
	}

	// The batch's error is on every message's span.
	rec.Reset()
	fake.err = errors.New("broker down")
	if err := pub.Publish("orders", message.NewMessage("d", nil), message.NewMessage("e", nil)); err == nil {
		t.Fatal("the broker's error was lost")
	}
	for _, s := range rec.Ended() {
		if s.Status().Description != "broker down" {
			t.Errorf("span %s status = %+v, want the batch's error", s.Name(), s.Status())
		}
	}
}

// A consumed message has exactly one span for its handling hop, on
// GoChannel and on Redis Streams, while a consumer.consume hook still runs.
func TestInstrument_one_span_per_consumed_message(t *testing.T) {
	for _, transport := range []string{"gochannel", "redis streams"} {
		t.Run(transport, func(t *testing.T) {
			rec, tp, opts := newTracing(t)
			reg := frameworkRegistry(t, tp)
			var consumed atomic.Int32
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				consumed.Add(1)
				return next(ctx)
			}), hooks.WithOperations("consumer.consume.*"))
			opts = append(opts, watermillobs.WithHookRegistry(reg))

			var pub message.Publisher
			var sub message.Subscriber
			topic := "hop-orders"
			if transport == "gochannel" {
				gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
				t.Cleanup(func() { _ = gc.Close() })
				pub, sub = gc, gc
			} else {
				client, prefix := testsvc.RedisPrefix(t)
				_ = client
				topic = prefix + topic
				pub, sub = testsvc.RedisPublisher(t), testsvc.RedisSubscriber(t, prefix+"group")
			}
			const n = 13
			done := make(chan struct{}, n)
			r := testsvc.NewRouter(t)
			if err := watermillobs.Instrument(r, watermillobs.InstrumentConfig{}, opts...); err != nil {
				t.Fatal(err)
			}
			r.AddConsumerHandler("count", topic, sub, func(msg *message.Message) error {
				done <- struct{}{}
				return nil
			})
			testsvc.RunRouter(t, r)
			outbound := watermillobs.NewPublisher(pub, opts...)
			for i := range n {
				if err := outbound.Publish(topic, message.NewMessage(fmt.Sprintf("m%02d", i), nil)); err != nil {
					t.Fatal(err)
				}
			}
			for range n {
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("messages not consumed")
				}
			}
			waitEnded(t, rec, 2*n)
			if got := consumed.Load(); got != n {
				t.Errorf("consumer.consume hook ran %d times, want %d", got, n)
			}
			var process int
			for _, s := range rec.Ended() {
				switch {
				case strings.HasPrefix(s.Name(), "process "):
					process++
				case strings.HasPrefix(s.Name(), "send "):
				default:
					t.Errorf("unexpected span %q nested in the hop", s.Name())
				}
			}
			if process != n {
				t.Errorf("%d process spans for %d messages", process, n)
			}
		})
	}
}

// waitEnded waits until rec has at least n ended spans, then a little
// longer so that any extra span shows.
func waitEnded(t *testing.T, rec *tracetest.SpanRecorder, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.Ended()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d spans ended, want %d", len(rec.Ended()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
}

// A hook that panics before or after next: the messages are published
// exactly once, the caller sees no error, and the panic is counted.
func TestPublisher_hook_panic_publishes_once(t *testing.T) {
	for _, when := range []string{"before next", "after next"} {
		t.Run(when, func(t *testing.T) {
			reg := hooks.NewRegistry()
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				if when == "before next" {
					panic("hook bug")
				}
				_ = next(ctx)
				panic("hook bug")
			}), hooks.WithOperations("publisher.publish.*"))
			fake := &fakePublisher{}
			pub := watermillobs.NewPublisher(fake, watermillobs.WithHookRegistry(reg))
			before := panics.Count()
			if err := pub.Publish("orders", message.NewMessage("a", nil), message.NewMessage("b", nil)); err != nil {
				t.Fatalf("error = %v, want none: a hook's bug must not fail the publish", err)
			}
			if len(fake.calls) != 1 || len(fake.calls[0]) != 2 {
				t.Errorf("wrapped publisher calls = %d, want exactly one with both messages", len(fake.calls))
			}
			if panics.Count() == before {
				t.Error("the hook panic was not counted")
			}
		})
	}
}

// The span hook that InstallFrameworkHooks registers survives a span
// processor that panics: the operation runs and returns its own result.
func TestInstallFrameworkHooks_panicking_span_processor(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(panickingProcessor{onStart: true, onEnd: true}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reg := hooks.NewRegistry()
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp}); err != nil {
		t.Fatal(err)
	}
	before := panics.Count()
	ran := false
	want := errors.New("operation failed")
	err := reg.Run(context.Background(), "uow.commit", nil, func(context.Context) error {
		ran = true
		return want
	})
	if !ran || !errors.Is(err, want) {
		t.Fatalf("ran=%v err=%v, want the operation's own result", ran, err)
	}
	if panics.Count() == before {
		t.Error("the processor's panic was not counted")
	}
}
