package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// BenchmarkSaveEvents saves one event per transaction (BEGIN, INSERT into a
// business table, outbox INSERT, COMMIT) against the real PostgreSQL:
// without any hook, and with the span hook and a sampled request span.
func BenchmarkSaveEvents(b *testing.B) {
	for _, bc := range []struct {
		name         string
		instrumented bool
	}{{"uninstrumented", false}, {"instrumented", true}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b)
			if _, err := e.db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
				b.Fatal(err)
			}
			cfg := outbox.Config{Registry: hooks.NewRegistry(), Propagator: propagation.NewCompositeTextMapPropagator()}
			ctx := context.Background()
			if bc.instrumented {
				tp := sdktrace.NewTracerProvider()
				cfg.Registry.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)),
					hooks.WithOperations(watermillobs.DefaultFrameworkTraceOperations...))
				cfg.Propagator = w3c
				ctx, _ = tp.Tracer("bench").Start(ctx, "request")
				ctx = hooks.WithCorrelationID(ctx, "bench-correlation")
			}
			o := e.newOutbox(cfg)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			n := 0
			for i := 0; b.Loop(); i++ {
				n++
				tx, err := e.db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				id := fmt.Sprintf("%s-%d", bc.name, i)
				if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, id); err != nil {
					b.Fatal(err)
				}
				msg := message.NewMessage(id, []byte(`{"order":"`+id+`"}`))
				msg.SetContext(ctx)
				if err := o.TxPublisher(tx).Publish("orders", msg); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkForwarder measures forwarding throughput: b.N events saved
// beforehand (100 per transaction), then forwarded to a Redis stream by one
// forwarder with default batches.
func BenchmarkForwarder(b *testing.B) {
	e := newEnv(b)
	o := e.newOutbox(outbox.Config{Registry: hooks.NewRegistry(), Propagator: w3c})
	topic := e.prefix + "bench"
	for i := 0; i < b.N; i += 100 {
		tx, err := e.db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		msgs := make([]*message.Message, 0, 100)
		for j := i; j < min(i+100, b.N); j++ {
			msgs = append(msgs, message.NewMessage(fmt.Sprintf("fwd-%d", j), []byte(`{}`)))
		}
		if err := o.TxPublisher(tx).Publish(topic, msgs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	e.runForwarder(o, outbox.ForwarderConfig{PollInterval: 5 * time.Millisecond})
	for {
		n, err := e.redis.XLen(context.Background(), topic).Result()
		if err != nil {
			b.Fatal(err)
		}
		if n >= int64(b.N) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
