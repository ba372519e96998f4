package cqrsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// BenchmarkContractHalves measures the two halves of what
// BenchmarkCommandSendHandle's hooks_disabled adds, apart from the bus and
// the router: the stamping on send (OnSend) and the restoring on handle
// (OnHandle around a no-op handler). Each runs next to "floor", the
// hand-written least that DESIGN.md's contract takes (the hooks of
// plain_making_contract), and "none", the message work alone.
func BenchmarkContractHalves(b *testing.B) {
	obs := cqrsbus.New(cqrsbus.Config{TracerProvider: noop.NewTracerProvider(), Propagator: propagator(), Registry: hooks.NewRegistry()})
	newMsg := func() *message.Message {
		msg := message.NewMessage("3f2c9b1e-7d4a-4c8e-9b1f-2a6d5e8c7b90", []byte(`{"order_id":"42"}`))
		msg.Metadata.Set(contract.NameKey, "PlaceOrder")
		msg.SetContext(context.Background())
		contractSink = msg // every variant's message lives on the heap, as on a bus
		return msg
	}
	b.Run("send/cqrsbus", func(b *testing.B) {
		onSend := obs.OnSend(nil)
		b.ReportAllocs()
		for b.Loop() {
			msg := newMsg()
			_ = onSend(cqrs.CommandBusOnSendParams{CommandName: "PlaceOrder", Message: msg})
		}
	})
	b.Run("send/floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msg := newMsg()
			md := msg.Metadata
			md[contract.MessageKindKey] = contract.KindCommand
			md[contract.CorrelationIDKey] = hooks.NewCorrelationID()
			md[contract.PublishedAtKey] = time.Now().UTC().Format(time.RFC3339Nano)
		}
	})
	whole := wholeContract{prop: propagator()}
	b.Run("send/floor_whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msg := newMsg()
			_ = whole.onSend(cqrs.CommandBusOnSendParams{CommandName: "PlaceOrder", Message: msg})
		}
	})
	b.Run("send/none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = newMsg()
		}
	})

	// The handling side gets a message as the router hands it over: the
	// metadata of a stamped command and a context with the router's values.
	handled := newMsg()
	_ = obs.OnSend(nil)(cqrs.CommandBusOnSendParams{CommandName: "PlaceOrder", Message: handled})
	routerCtx := context.Background()
	for _, k := range []string{"handler", "publisher", "subscriber", "topic", "publish_topic"} {
		routerCtx = context.WithValue(routerCtx, routerKey(k), k)
	}
	handler := cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error { return nil })
	params := cqrs.CommandProcessorOnHandleParams{Handler: handler, CommandName: "PlaceOrder", Command: &PlaceOrder{OrderID: "42"}, Message: handled}
	b.Run("handle/cqrsbus", func(b *testing.B) {
		onHandle := obs.OnCommandHandle(nil)
		b.ReportAllocs()
		for b.Loop() {
			handled.SetContext(routerCtx)
			_ = onHandle(params)
		}
	})
	b.Run("handle/floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			handled.SetContext(routerCtx)
			p := params
			ctx := hooks.Restore(p.Message.Context(), hooks.Vars{
				CorrelationID: p.Message.Metadata.Get(contract.CorrelationIDKey),
				CausationID:   p.Message.UUID,
			})
			_ = p.Handler.Handle(ctx, p.Command)
		}
	})
	b.Run("handle/floor_whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			handled.SetContext(routerCtx)
			_ = whole.onHandle(params)
		}
	})
	b.Run("handle/none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			handled.SetContext(routerCtx)
			_ = params.Handler.Handle(params.Message.Context(), params.Command)
		}
	})
}

type routerKey string

var contractSink *message.Message
