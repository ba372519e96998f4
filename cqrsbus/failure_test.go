package cqrsbus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel/codes"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

var errTransient = errors.New("stock service unavailable")

// TestFailure_handler_error_is_retried: a failing handler is observed as
// failing on every attempt (span, metric, log) and retried as Watermill
// retries it, by the Retry middleware or by nack and redelivery.
func TestFailure_handler_error_is_retried(t *testing.T) {
	tests := []struct {
		name     string
		outer    []message.HandlerMiddleware
		failures int32
	}{
		{"retry middleware", []message.HandlerMiddleware{middleware.Retry{MaxRetries: 2}.Middleware}, 2},
		{"nack and redelivery", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, goChannelTransport(t), serviceOptions{outer: tt.outer})
			var calls atomic.Int32
			err := s.cmdProc.AddHandlers(cqrs.NewCommandHandler("reserve_stock", func(ctx context.Context, cmd *ReserveStock) error {
				if calls.Add(1) <= tt.failures {
					return errTransient
				}
				return nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			testsvc.RunRouter(t, s.router)
			if err := s.commands.Send(context.Background(), &ReserveStock{OrderID: "1"}); err != nil {
				t.Fatal(err)
			}
			attempts := float64(tt.failures + 1)
			eventually(t, "the successful attempt to be counted", func() bool {
				return s.handledTotal(t, "command", "ReserveStock", "success") == 1
			})
			if got := s.handledTotal(t, "command", "ReserveStock", "error"); got != float64(tt.failures) {
				t.Errorf("cqrs_message_total{outcome=error} = %v, want %d", got, tt.failures)
			}
			if got := calls.Load(); float64(got) != attempts {
				t.Errorf("handler ran %d times, want %v", got, attempts)
			}
			eventually(t, "every cqrs span to end", func() bool {
				return len(spansNamed(s.spans, "cqrs.ReserveStock")) == int(attempts)
			})
			failed := 0
			for _, sp := range spansNamed(s.spans, "cqrs.ReserveStock") {
				if sp.Status().Code == codes.Error && attr(sp, "cqrs.outcome") == "error" {
					failed++
				}
			}
			if failed != int(tt.failures) {
				t.Errorf("%d cqrs spans failed, want %d", failed, tt.failures)
			}
			outcomes := map[string]int{}
			for _, r := range s.logs.handled(t, "ReserveStock") {
				outcomes[r["outcome"].(string)]++
				if r["kind"] != "command" {
					t.Errorf("log kind = %v, want command", r["kind"])
				}
			}
			if outcomes["error"] != int(tt.failures) || outcomes["success"] != 1 {
				t.Errorf("logged outcomes %v, want %d error and 1 success", outcomes, tt.failures)
			}
			s.lint(t)
		})
	}
}

// TestFailure_handler_panic: a panic is observed (span error.type panic,
// metric error, log with the panic) and reaches Watermill's Recoverer
// unchanged, which nacks: the message is redelivered.
func TestFailure_handler_panic(t *testing.T) {
	t.Parallel()
	s := newService(t, goChannelTransport(t), serviceOptions{outer: []message.HandlerMiddleware{middleware.Recoverer}})
	var calls atomic.Int32
	err := s.cmdProc.AddHandlers(cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
		if calls.Add(1) == 1 {
			panic("nil order repository")
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.RunRouter(t, s.router)
	if err := s.commands.Send(context.Background(), &PlaceOrder{OrderID: "1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the redelivered message to succeed", func() bool {
		return s.handledTotal(t, "command", "PlaceOrder", "success") == 1
	})
	if got := s.handledTotal(t, "command", "PlaceOrder", "error"); got != 1 {
		t.Errorf("cqrs_message_total{outcome=error} = %v, want 1", got)
	}
	eventually(t, "both cqrs spans to end", func() bool { return len(spansNamed(s.spans, "cqrs.PlaceOrder")) == 2 })
	panicked := 0
	for _, sp := range spansNamed(s.spans, "cqrs.PlaceOrder") {
		if attr(sp, "error.type") == "panic" && sp.Status().Code == codes.Error {
			panicked++
		}
	}
	if panicked != 1 {
		t.Errorf("%d cqrs spans record the panic, want 1", panicked)
	}
	logged := false
	for _, r := range s.logs.handled(t, "PlaceOrder") {
		if r["panic"] == "nil order repository" && r["outcome"] == "error" {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no log record of the panic: %v", s.logs.handled(t, "PlaceOrder"))
	}
}

// publishRaw publishes a hand-made message to topic, as a foreign producer
// would.
func publishRaw(t *testing.T, s *service, topic, name string, payload []byte, kind string) *message.Message {
	t.Helper()
	msg := message.NewMessage(hooks.NewCorrelationID(), payload)
	msg.Metadata.Set(contract.NameKey, name)
	msg.Metadata.Set(contract.MessageKindKey, kind)
	if err := s.tr.pub.Publish(topic, msg); err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestFailure_unknown_event: an event no handler accepts is observed with
// the outcome the processor gives it, and then nacked (AckOnUnknownEvent
// false: redelivered) or acked (true), as Watermill does.
func TestFailure_unknown_event(t *testing.T) {
	for _, processor := range []string{"event processor", "event group processor"} {
		for _, ack := range []bool{false, true} {
			name := processor + "/nack"
			if ack {
				name = processor + "/ack"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := newService(t, goChannelTransport(t), serviceOptions{ackOnUnknownEvent: ack})
				var calls atomic.Int32
				var topic string
				if processor == "event processor" {
					topic = s.topic("events.OrderPlaced")
					err := s.evtProc.AddHandlers(cqrs.NewEventHandler("notify", func(ctx context.Context, e *OrderPlaced) error {
						calls.Add(1)
						return nil
					}))
					if err != nil {
						t.Fatal(err)
					}
				} else {
					topic = s.topic("events.OrderPlaced")
					err := s.group.AddHandlersGroup("orders", cqrs.NewGroupEventHandler(func(ctx context.Context, e *OrderPlaced) error {
						calls.Add(1)
						return nil
					}))
					if err != nil {
						t.Fatal(err)
					}
				}
				testsvc.RunRouter(t, s.router)
				publishRaw(t, s, topic, "OrderShipped", []byte(`{}`), "event")

				if ack {
					eventually(t, "the unknown event to be handled", func() bool {
						return s.handledTotal(t, "event", "OrderShipped", "success") == 1
					})
					time.Sleep(50 * time.Millisecond) // a redelivery would show by now
					if got := s.handledTotal(t, "event", "OrderShipped", "success"); got != 1 {
						t.Errorf("acked unknown event handled %v times, want once", got)
					}
				} else {
					eventually(t, "the unknown event to fail and be redelivered", func() bool {
						return s.handledTotal(t, "event", "OrderShipped", "error") >= 2
					})
					if got := s.handledTotal(t, "event", "OrderShipped", "success"); got != 0 {
						t.Errorf("nacked unknown event counted %v successes", got)
					}
					if len(s.logs.handled(t, "OrderShipped")) == 0 || s.logs.handled(t, "OrderShipped")[0]["outcome"] != "error" {
						t.Error("the failure is not logged with outcome error")
					}
				}
				if calls.Load() != 0 {
					t.Errorf("a handler ran %d times for an unknown event", calls.Load())
				}
				if sp := spansNamed(s.spans, "cqrs.OrderShipped"); len(sp) != 0 {
					t.Errorf("%d cqrs spans for an event no handler accepted", len(sp))
				}
			})
		}
	}
}

// TestFailure_unmarshal_error: a payload the marshaler rejects fails before
// any handler: observed as an error and nacked (redelivered), as Watermill
// does.
func TestFailure_unmarshal_error(t *testing.T) {
	t.Parallel()
	s := newService(t, goChannelTransport(t), serviceOptions{})
	var calls atomic.Int32
	err := s.cmdProc.AddHandlers(cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
		calls.Add(1)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.RunRouter(t, s.router)
	publishRaw(t, s, s.topic("commands.PlaceOrder"), "PlaceOrder", []byte(`not json`), "command")
	eventually(t, "the broken command to fail and be redelivered", func() bool {
		return s.handledTotal(t, "command", "PlaceOrder", "error") >= 2
	})
	if calls.Load() != 0 {
		t.Errorf("the handler ran %d times for an undecodable command", calls.Load())
	}
	recs := s.logs.handled(t, "PlaceOrder")
	if len(recs) == 0 || recs[0]["outcome"] != "error" || recs[0]["error"] == nil {
		t.Errorf("the failure is not logged with outcome and error: %v", recs)
	}
}

// TestUserOnHandle_runs_once_through_router: a processor's pre-existing
// OnHandle still runs exactly once per command.
func TestUserOnHandle_runs_once_through_router(t *testing.T) {
	t.Parallel()
	var userCalls, handlerCalls atomic.Int32
	var sawSpan atomic.Bool
	s := newService(t, goChannelTransport(t), serviceOptions{
		userOnHandle: func(p cqrs.CommandProcessorOnHandleParams) error {
			userCalls.Add(1)
			sawSpan.Store(watermillobs.SpanID(p.Message.Context()) != "")
			return p.Handler.Handle(p.Message.Context(), p.Command)
		},
	})
	err := s.cmdProc.AddHandlers(cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
		handlerCalls.Add(1)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	testsvc.RunRouter(t, s.router)
	if err := s.commands.Send(context.Background(), &PlaceOrder{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the command to be handled", func() bool {
		return s.handledTotal(t, "command", "PlaceOrder", "success") == 1
	})
	if userCalls.Load() != 1 || handlerCalls.Load() != 1 {
		t.Errorf("user OnHandle ran %d times, handler %d; want 1 and 1", userCalls.Load(), handlerCalls.Load())
	}
	if !sawSpan.Load() {
		t.Error("the user's OnHandle did not see the cqrs span in the message context")
	}
}
