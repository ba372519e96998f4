package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func TestForwarder_consumer_continues_the_saving_transactions_trace(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name  string
		trace outbox.ForwardTrace
	}{{"linked", outbox.ForwardLinked}, {"child", outbox.ForwardChild}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			reg := hooks.NewRegistry()
			// The default profile traces the forward.
			reg.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)), hooks.WithOperations(watermillobs.DefaultFrameworkTraceOperations...))
			o := e.newOutbox(outbox.Config{Registry: reg, Propagator: w3c})
			topic := e.prefix + "orders"

			// The consumer: a router handler with watermillobs' tracing.
			consumed := make(chan trace.SpanContext, 1)
			r := testsvc.NewRouter(t)
			r.AddConsumerHandler("consumer", topic, testsvc.RedisSubscriber(t, e.prefix+"g"), func(msg *message.Message) error {
				select {
				case consumed <- trace.SpanContextFromContext(msg.Context()):
				default:
				}
				return nil
			}).AddMiddleware(watermillobs.Tracing(watermillobs.TracingConfig{}, watermillobs.WithTracerProvider(tp), watermillobs.WithPropagators(w3c)))
			testsvc.RunRouter(t, r)

			// The request that commits the transaction.
			ctx, request := tp.Tracer("test").Start(context.Background(), "POST /orders")
			msg := message.NewMessage("traced-00000000000000000000000000", []byte(`{}`))
			msg.SetContext(ctx)
			e.saveOne(o, topic, msg)
			request.End()

			const waited = 150 * time.Millisecond
			time.Sleep(waited) // the message waits in the outbox
			pub := watermillobs.NewPublisher(testsvc.RedisPublisher(t), watermillobs.WithTracerProvider(tp), watermillobs.WithPropagators(w3c))
			e.runForwarder(o, outbox.ForwarderConfig{Publisher: pub, Trace: mode.trace})

			var consumer trace.SpanContext
			select {
			case consumer = <-consumed:
			case <-time.After(waitFor):
				t.Fatal("the forwarded message was not consumed")
			}
			if consumer.TraceID() != request.SpanContext().TraceID() {
				t.Errorf("consumer span in trace %s, want the request's %s", consumer.TraceID(), request.SpanContext().TraceID())
			}

			save := endedSpan(t, sr, outbox.OpSaveEvents)
			if save.Parent().SpanID() != request.SpanContext().SpanID() {
				t.Errorf("save span is not a child of the request span")
			}
			fwd := endedSpan(t, sr, outbox.OpForwardPrefix+topic)
			switch mode.trace {
			case outbox.ForwardLinked:
				if fwd.Parent().IsValid() || len(fwd.Links()) != 1 || fwd.Links()[0].SpanContext.SpanID() != save.SpanContext().SpanID() {
					t.Errorf("forward span: parent %v, links %v; want a root linked to the save span %v",
						fwd.Parent(), fwd.Links(), save.SpanContext().SpanID())
				}
			case outbox.ForwardChild:
				if fwd.Parent().SpanID() != save.SpanContext().SpanID() || fwd.SpanContext().TraceID() != request.SpanContext().TraceID() {
					t.Errorf("forward span: parent %v; want the save span %v", fwd.Parent(), save.SpanContext())
				}
			}
			inOutbox, ok := attrOf(fwd.Attributes(), "outbox.time_in_outbox_ms")
			if !ok || inOutbox.AsFloat64() < float64(waited/time.Millisecond) {
				t.Errorf("forward span outbox.time_in_outbox_ms = %v (%v), want at least %d", inOutbox.AsFloat64(), ok, waited/time.Millisecond)
			}
			batch := endedSpan(t, sr, outbox.OpProcessBatch)
			if size, _ := attrOf(batch.Attributes(), outbox.AttrBatchSize); size.AsInt64() != 1 {
				t.Errorf("process_batch outbox.batch_size = %v, want 1", size.AsInt64())
			}
		})
	}
}

// endedSpan waits for the ended span called name.
func endedSpan(t *testing.T, sr *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		for _, s := range sr.Ended() {
			if s.Name() == name {
				return s
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range sr.Ended() {
				names = append(names, s.Name())
			}
			t.Fatalf("no ended span %q; have %v", name, names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func attrOf(kvs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}
