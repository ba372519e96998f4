package watermillobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

func TestPropagation_Inject(t *testing.T) {
	_, tp, _ := newTracing(t)
	ctx, span := startSpan(tp, "parent")
	defer span.End()
	ctx = hooks.WithCorrelationID(ctx, "corr-1")
	ctx = hooks.WithCausationID(ctx, "cause-1")

	t.Run("writes the contract", func(t *testing.T) {
		msg := message.NewMessage("m1", []byte("{}"))
		msg.Metadata = nil
		before := time.Now().Add(-time.Second)
		inject(ctx, msg)
		if got := msg.Metadata.Get(contract.CorrelationIDKey); got != "corr-1" {
			t.Errorf("correlation_id = %q", got)
		}
		if got := msg.Metadata.Get(contract.CausationIDKey); got != "cause-1" {
			t.Errorf("causation_id = %q", got)
		}
		sc := span.SpanContext()
		want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
		if got := msg.Metadata.Get(contract.TraceparentKey); got != want {
			t.Errorf("traceparent = %q, want %q", got, want)
		}
		at, ok := contract.PublishedAt(msg)
		if !ok || at.Before(before) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("published_at = %q", msg.Metadata.Get(contract.PublishedAtKey))
		}
	})

	t.Run("never overwrites user values", func(t *testing.T) {
		msg := message.NewMessage("m2", nil)
		user := map[string]string{
			contract.CorrelationIDKey: "user-corr",
			contract.CausationIDKey:   "user-cause",
			contract.TraceparentKey:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			contract.PublishedAtKey:   "2020-01-01T00:00:00Z",
		}
		for k, v := range user {
			msg.Metadata.Set(k, v)
		}
		inject(ctx, msg)
		for k, v := range user {
			if got := msg.Metadata.Get(k); got != v {
				t.Errorf("%s overwritten: %q, want %q", k, got, v)
			}
		}
	})

	t.Run("keeps a malformed user value and replaces a malformed context one", func(t *testing.T) {
		msg := message.NewMessage("m4", nil)
		msg.Metadata.Set(contract.CorrelationIDKey, "not an id")
		inject(context.Background(), msg)
		if got := msg.Metadata.Get(contract.CorrelationIDKey); got != "not an id" {
			t.Errorf("a user's correlation_id was overwritten: %q", got)
		}

		msg = message.NewMessage("m5", nil)
		bad := hooks.Restore(context.Background(), hooks.Vars{CorrelationID: "has space", CausationID: "also bad"})
		inject(bad, msg)
		if id := msg.Metadata.Get(contract.CorrelationIDKey); len(id) != 36 {
			t.Errorf("correlation_id = %q, want a new UUID instead of the malformed one", id)
		}
		if _, ok := msg.Metadata[contract.CausationIDKey]; ok {
			t.Errorf("a malformed causation ID was written")
		}
	})

	t.Run("starts a correlation ID when none exists", func(t *testing.T) {
		msg := message.NewMessage("m3", nil)
		inject(context.Background(), msg)
		if id := msg.Metadata.Get(contract.CorrelationIDKey); len(id) != 36 {
			t.Errorf("correlation_id = %q, want a new UUID", id)
		}
		if _, ok := msg.Metadata[contract.CausationIDKey]; ok {
			t.Errorf("causation_id set without a cause")
		}
		if _, ok := msg.Metadata[contract.TraceparentKey]; ok {
			t.Errorf("traceparent written without a span")
		}
	})
}

func TestPropagation_Extract(t *testing.T) {
	tests := []struct {
		name       string
		md         message.Metadata
		wantRemote bool
		wantCorr   string // "" means: a fresh UUID
	}{
		{"valid", message.Metadata{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "correlation_id": "c-1"}, true, "c-1"},
		{"garbage traceparent", message.Metadata{"traceparent": "garbage", "correlation_id": "c-2"}, false, "c-2"},
		{"oversized traceparent", message.Metadata{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" + strings.Repeat("x", 1<<20)}, false, ""},
		{"non-UTF-8 correlation", message.Metadata{"correlation_id": "\xff\xfe"}, false, ""},
		{"1 MiB correlation", message.Metadata{"correlation_id": strings.Repeat("a", 1<<20)}, false, ""},
		{"nil metadata", nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := message.NewMessage("uuid-1", nil)
			msg.Metadata = tt.md
			ctx := w3cPropagation.Extract(context.Background(), msg)
			sc := trace.SpanContextFromContext(ctx)
			if sc.IsValid() != tt.wantRemote || (tt.wantRemote && !sc.IsRemote()) {
				t.Errorf("span context %v, want remote %v", sc, tt.wantRemote)
			}
			corr := hooks.CorrelationID(ctx)
			if tt.wantCorr != "" && corr != tt.wantCorr {
				t.Errorf("correlation = %q, want %q", corr, tt.wantCorr)
			}
			if tt.wantCorr == "" && len(corr) != 36 {
				t.Errorf("correlation = %q, want a fresh UUID", corr)
			}
			if got := hooks.CausationID(ctx); got != "uuid-1" {
				t.Errorf("causation = %q, want the message UUID", got)
			}
		})
	}
}
