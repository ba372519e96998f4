package watermillobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// panickingOrderHandler is the user's handler whose frame the stack that
// Recoverer reports must show.
func panickingOrderHandler(*message.Message) ([]*message.Message, error) {
	panic("order handler bug")
}

// A handler panic under the hook pipeline keeps its own stack: Recoverer,
// outermost, reports the handler's frame, not hooks/pipeline.go.
func TestInstrument_handler_panic_keeps_its_stack(t *testing.T) {
	_, _, opts := newTracing(t)
	reg := hooks.NewRegistry()
	observed := make(chan bool, 1)
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		returned := false
		defer func() { observed <- !returned }() // a deferred flag sees the panic
		err := next(ctx)
		returned = true
		return err
	}), hooks.WithOperations("consumer.consume.*"))

	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = gc.Close() })
	r := testsvc.NewRouter(t)
	reported := make(chan error, 1)
	r.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil {
				select {
				case reported <- err:
				default:
				}
			}
			return out, nil // ack: one delivery is enough
		}
	}, middleware.Recoverer)
	if err := watermillobs.Instrument(r, watermillobs.InstrumentConfig{}, append(opts, watermillobs.WithHookRegistry(reg))...); err != nil {
		t.Fatal(err)
	}
	r.AddHandler("orders", "orders", gc, "out", gc, panickingOrderHandler)
	testsvc.RunRouter(t, r)
	if err := gc.Publish("orders", message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-reported:
	case <-time.After(10 * time.Second):
		t.Fatal("no error reported")
	}
	var rp middleware.RecoveredPanicError
	if !errors.As(err, &rp) {
		t.Fatalf("error = %v, want a RecoveredPanicError", err)
	}
	if !strings.Contains(rp.Stacktrace, "panickingOrderHandler") {
		t.Errorf("Recoverer's stack does not show the handler:\n%s", rp.Stacktrace)
	}
	if !<-observed {
		t.Error("the hook's deferred flag did not see the panic")
	}
}
