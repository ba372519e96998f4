package contract_test

import (
	"context"
	"testing"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// FuzzMetadata feeds hostile metadata to everything that reads it: it must
// never panic, and what it derives must be well formed.
func FuzzMetadata(f *testing.F) {
	f.Add("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "c-1", "2026-11-25T00:00:00.123456789Z", "OrderPlaced", "event", "uuid-1")
	f.Add("garbage", "\xff\xfe", "not a time", "\xc3", "query", "")
	f.Add("00-00000000000000000000000000000000-0000000000000000-00", " ", "9999-12-31T23:59:59Z", "", "", "has space")
	w3c := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	prop := contract.NewPropagation(contract.PropagationConfig{Propagator: w3c})
	f.Fuzz(func(t *testing.T, traceparent, correlation, publishedAt, name, kind, uuid string) {
		msg := message.NewMessage(uuid, nil)
		msg.Metadata = message.Metadata{
			contract.TraceparentKey:   traceparent,
			contract.CorrelationIDKey: correlation,
			contract.PublishedAtKey:   publishedAt,
			contract.NameKey:          name,
			contract.MessageKindKey:   kind,
		}
		ctx := prop.Extract(context.Background(), msg)
		if id := hooks.CorrelationID(ctx); id == "" || !utf8.ValidString(id) {
			t.Fatalf("correlation ID %q", id)
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.IsRemote() {
			t.Fatal("extracted span context is not remote")
		}
		if typ := contract.MessageType(msg); !utf8.ValidString(typ) || len(typ) > 256 {
			t.Fatalf("message type %q", typ)
		}
		switch contract.MessageKind(msg) {
		case contract.KindCommand, contract.KindEvent, contract.KindQuery, contract.KindReply, contract.KindMessage:
		default:
			t.Fatalf("kind %q", contract.MessageKind(msg))
		}
		_, _ = contract.PublishedAt(msg)
		out := message.NewMessage("out", nil)
		out.Metadata = nil
		prop.Inject(ctx, out)
		if out.Metadata.Get(contract.CorrelationIDKey) != hooks.CorrelationID(ctx) {
			t.Fatal("injected correlation ID differs from the context's")
		}
	})
}
