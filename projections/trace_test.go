package projections_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func TestTrace_projection_span_continues_or_links_the_published_message(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		link  bool
		spans projections.SpanMode
	}{
		{"parent", false, projections.SpanPerEvent},
		{"link", true, projections.SpanPerEvent},
		{"batch", false, projections.SpanPerBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			reg := hooks.NewRegistry()
			reg.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)), hooks.WithOperations("projection.*", "projection_sink.*", "redis.checkpoint.*"))

			var correlation, causation string
			proj := projections.NewProjection("traced", func(ctx context.Context, ev projections.Event, b *projections.Batch) error {
				correlation, causation = hooks.CorrelationID(ctx), hooks.CausationID(ctx)
				b.Set("seen", ev.UUID, "1")
				return nil
			})
			w, _ := newRedisWorker(t, projections.Config{Projection: proj, Streams: []string{"orders"}, Hooks: reg, LinkTraces: tc.link, Spans: tc.spans})
			stream := w.StreamNames()[0]

			pub := watermillobs.NewPublisher(testsvc.RedisPublisher(t), watermillobs.WithTracerProvider(tp), watermillobs.WithHookRegistry(hooks.NewRegistry()))
			msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
			msg.Metadata.Set("name", "OrderPlaced")
			ctx := hooks.WithCorrelationID(context.Background(), "corr-42")
			msg.SetContext(ctx)
			if err := pub.Publish(stream, msg); err != nil {
				t.Fatal(err)
			}
			var send sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if strings.HasPrefix(s.Name(), "send ") {
					send = s
				}
			}
			if send == nil {
				t.Fatalf("no send span among %v", spanNames(rec.Ended()))
			}

			stop := start(t, w)
			waitCaughtUp(t, w, 20*time.Second)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if correlation != "corr-42" || causation != msg.UUID {
				t.Fatalf("handler saw correlation %q causation %q, want corr-42 and %s", correlation, causation, msg.UUID)
			}
			var process sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "projection.process.traced" {
					process = s
				}
			}
			if process == nil {
				t.Fatalf("no projection.process.traced span among %v", spanNames(rec.Ended()))
			}
			if got := attr(process, "event.type"); got != "OrderPlaced" {
				t.Fatalf("event.type = %q, want OrderPlaced", got)
			}
			sendSC := send.SpanContext()
			switch {
			case tc.link || tc.spans == projections.SpanPerBatch:
				if process.SpanContext().TraceID() == sendSC.TraceID() || process.Parent().IsValid() {
					t.Fatalf("span in trace %s with parent %v, want a new root", process.SpanContext().TraceID(), process.Parent())
				}
				if links := process.Links(); len(links) != 1 || links[0].SpanContext.TraceID() != sendSC.TraceID() || links[0].SpanContext.SpanID() != sendSC.SpanID() {
					t.Fatalf("links = %+v, want one to the send span %v", links, sendSC)
				}
			default:
				if process.Parent().SpanID() != sendSC.SpanID() || process.SpanContext().TraceID() != sendSC.TraceID() {
					t.Fatalf("parent = %v, want the send span %v", process.Parent(), sendSC)
				}
			}
			if !hasSpan(rec.Ended(), "projection_sink.write.traced") || !hasSpan(rec.Ended(), "redis.checkpoint.save.traced") {
				t.Fatalf("spans %v, want the sink write and checkpoint save", spanNames(rec.Ended()))
			}
		})
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

func hasSpan(spans []sdktrace.ReadOnlySpan, name string) bool {
	for _, s := range spans {
		if s.Name() == name {
			return true
		}
	}
	return false
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
