package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// instrumentations are the variants of the outbox benchmarks: off (no
// hook registered, no propagation) and the default profile (the span hook
// of watermillobs over DefaultFrameworkTraceOperations on an
// always-sampling SDK provider, W3C propagation, and a sampled request
// span for saving; a watermillobs.Publisher for forwarding).
var instrumentations = []struct {
	name         string
	instrumented bool
}{{"off", false}, {"default_profile", true}}

// benchConfig returns the outbox configuration of a variant, and the
// tracer provider when instrumented.
func benchConfig(instrumented bool) (outbox.Config, *sdktrace.TracerProvider) {
	cfg := outbox.Config{Registry: hooks.NewRegistry(), Propagator: propagation.NewCompositeTextMapPropagator()}
	if !instrumented {
		return cfg, nil
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	cfg.Registry.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)),
		hooks.WithOperations(watermillobs.DefaultFrameworkTraceOperations...))
	cfg.Propagator = w3c
	return cfg, tp
}

// BenchmarkSaveEvents saves one event per transaction (BEGIN, INSERT into a
// business table, outbox INSERT, COMMIT) against the real PostgreSQL.
// Events per second = 1e9 / (ns/op).
func BenchmarkSaveEvents(b *testing.B) {
	for _, bc := range instrumentations {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b)
			if _, err := e.db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
				b.Fatal(err)
			}
			cfg, tp := benchConfig(bc.instrumented)
			ctx := context.Background()
			if tp != nil {
				defer func() { _ = tp.Shutdown(ctx) }()
				ctx, _ = tp.Tracer("bench").Start(ctx, "request")
				ctx = hooks.WithCorrelationID(ctx, "bench-correlation")
			}
			o := e.newOutbox(cfg)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
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
		})
	}
}

// BenchmarkForwarder measures forwarding: b.N events saved beforehand (100
// per transaction), then forwarded to a Redis stream by one forwarder with
// default batches; the op ends when the stream holds them all. Messages
// per second = 1e9 / (ns/op).
func BenchmarkForwarder(b *testing.B) {
	for _, bc := range instrumentations {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b)
			cfg, tp := benchConfig(bc.instrumented)
			if tp != nil {
				defer func() { _ = tp.Shutdown(context.Background()) }()
			}
			o := e.newOutbox(cfg)
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
			var pub message.Publisher = testsvc.RedisPublisher(b)
			if tp != nil {
				pub = watermillobs.NewPublisher(pub, watermillobs.WithTracerProvider(tp), watermillobs.WithPropagators(w3c),
					watermillobs.WithHookRegistry(cfg.Registry))
			}
			b.ReportAllocs()
			b.ResetTimer()
			e.runForwarder(o, outbox.ForwarderConfig{Publisher: pub, PollInterval: 5 * time.Millisecond})
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
		})
	}
}
