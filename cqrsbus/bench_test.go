package cqrsbus_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// BenchmarkCommandSendHandle measures one command sent through the bus and
// handled by a CommandProcessor on gochannel, end to end:
//
//   - plain: Watermill's bus and processor, nothing of this module;
//   - plain_with_contract: plain, with an OnSend that writes the metadata
//     values cqrsbus adds (message_kind, correlation_id, published_at) as
//     constants: the cost of carrying them, apart from making them;
//   - plain_making_contract: plain, with hand-written hooks that make the
//     contract's values per command (a new correlation ID, message_kind,
//     published_at from the clock) and, on the handling side, put the
//     correlation and causation IDs into the handler's context: the least
//     any implementation of DESIGN.md's contract can do, with nothing of
//     cqrsbus;
//   - plain_whole_contract: plain, with hand-written hooks that do all the
//     contract asks (wholeContract): plain_making_contract plus user values
//     kept, the causation ID and the trace context through the propagator,
//     the hop rule and validation of what is read; the same work as
//     hooks_disabled, with nothing of cqrsbus;
//   - hooks_disabled: the cqrsbus wrapper, OnSend and OnHandle chained, a
//     no-op TracerProvider and a registry with no hook (the cost a service
//     pays with the instrumentation compiled in but nothing observing);
//   - hooks_registered_off: as hooks_disabled, with a hook registered for
//     every operation and switched off (Registration.SetEnabled(false));
//   - full: as hooks_disabled plus a recording (sampled) TracerProvider, a
//     pass-through hook on every operation, and watermillobs.Instrument
//     (correlation, tracing, logging to io.Discard, promobs) on the router
//     and NewPublisher on the bus's publisher.
func BenchmarkCommandSendHandle(b *testing.B) {
	benchmarkCommands(b, false, "plain", "plain_with_contract", "plain_making_contract", "plain_whole_contract", "hooks_disabled", "hooks_registered_off", "full")
}

// BenchmarkRedisCommand is BenchmarkCommandSendHandle's plain,
// plain_making_contract and full on Redis Streams (a stream per command, one
// consumer group): the cqrsbus command path of make bench-redis.
func BenchmarkRedisCommand(b *testing.B) {
	benchmarkCommands(b, true, "plain", "plain_making_contract", "full")
}

func benchmarkCommands(b *testing.B, redis bool, modes ...string) {
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			send, done := benchService(b, mode, redis)
			ctx := context.Background()
			cmd := &PlaceOrder{OrderID: "42"}
			b.ReportAllocs()
			var cpu *testsvc.CPUMeter
			if redis {
				cpu = testsvc.StartCPU(b)
			}
			b.ResetTimer()
			// Commands are sent in windows of benchWindow and each window is
			// awaited, so that the measure is the work per command rather
			// than the scheduler's wake-up latency of a strict ping-pong.
			sent := 0
			for b.Loop() {
				if err := send(ctx, cmd); err != nil {
					b.Fatal(err)
				}
				if sent++; sent == benchWindow {
					for range sent {
						<-done
					}
					sent = 0
				}
			}
			for range sent {
				<-done
			}
			if cpu != nil {
				cpu.Report(b.N)
			}
		})
	}
}

// contractMetadata is what cqrsbus stamps on a command that plain
// Watermill does not carry, as constants: plain_with_contract shows what
// carrying these bytes through the publisher, the gochannel copy and the
// router costs, apart from making them.
var contractMetadata = map[string]string{
	contract.MessageKindKey:   contract.KindCommand,
	contract.CorrelationIDKey: "c5a0c1a2-aaaa-4bbb-8ccc-123456789012",
	contract.PublishedAtKey:   "2026-11-25T02:12:00.123456789Z",
}

// benchWindow is the number of commands in flight in the benchmark.
const benchWindow = 64

// benchService builds the bus and processor of mode, on gochannel, or on
// the test Redis when redis is set.
func benchService(b *testing.B, mode string, redis bool) (func(context.Context, any) error, <-chan struct{}) {
	var transport message.Publisher
	var subscriber func() message.Subscriber
	prefix := ""
	if redis {
		_, prefix = testsvc.RedisPrefix(b)
		transport = testsvc.RedisPublisher(b)
		subscriber = func() message.Subscriber { return testsvc.RedisSubscriber(b, "bench") }
	} else {
		pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1}, watermill.NopLogger{})
		b.Cleanup(func() { _ = pubsub.Close() })
		transport = pubsub
		subscriber = func() message.Subscriber { return pubsub }
	}
	router := testsvc.NewRouter(b)
	pub := transport
	var obs *cqrsbus.Instrumentation
	reg := hooks.NewRegistry()
	switch mode {
	case "hooks_disabled":
		obs = cqrsbus.New(cqrsbus.Config{TracerProvider: noop.NewTracerProvider(), Propagator: propagator(), Registry: reg})
	case "hooks_registered_off":
		reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) }),
			hooks.WithEnabled(false))
		obs = cqrsbus.New(cqrsbus.Config{TracerProvider: noop.NewTracerProvider(), Propagator: propagator(), Registry: reg})
	case "full":
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) }))
		obs = cqrsbus.New(cqrsbus.Config{TracerProvider: tp, Propagator: propagator(), Registry: reg})
		m, err := promobs.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		wopts := []watermillobs.Option{
			watermillobs.WithTracerProvider(tp), watermillobs.WithPropagators(propagator()),
			watermillobs.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))),
			watermillobs.WithHookRegistry(hooks.NewRegistry()),
		}
		if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{m}}, wopts...); err != nil {
			b.Fatal(err)
		}
		pub = watermillobs.NewPublisher(m.DecoratePublisher(transport), wopts...)
	}

	cbc := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return prefix + p.CommandName, nil },
		Marshaler:            marshaler,
	}
	cpc := cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return prefix + p.CommandName, nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber(), nil
		},
		Marshaler: marshaler,
	}
	if mode == "plain_with_contract" {
		cbc.OnSend = func(p cqrs.CommandBusOnSendParams) error {
			for k, v := range contractMetadata {
				p.Message.Metadata[k] = v
			}
			return nil
		}
	}
	if mode == "plain_making_contract" {
		cbc.OnSend = func(p cqrs.CommandBusOnSendParams) error {
			md := p.Message.Metadata
			md[contract.MessageKindKey] = contract.KindCommand
			md[contract.CorrelationIDKey] = hooks.NewCorrelationID()
			md[contract.PublishedAtKey] = time.Now().UTC().Format(time.RFC3339Nano)
			return nil
		}
		cpc.OnHandle = func(p cqrs.CommandProcessorOnHandleParams) error {
			ctx := hooks.Restore(p.Message.Context(), hooks.Vars{
				CorrelationID: p.Message.Metadata.Get(contract.CorrelationIDKey),
				CausationID:   p.Message.UUID,
			})
			return p.Handler.Handle(ctx, p.Command)
		}
	}
	if mode == "plain_whole_contract" {
		w := wholeContract{prop: propagator()}
		cbc.OnSend = w.onSend
		cpc.OnHandle = w.onHandle
	}
	if obs != nil {
		obs.InstrumentCommandBusConfig(&cbc)
		obs.InstrumentCommandProcessorConfig(&cpc)
	}
	inner, err := cqrs.NewCommandBusWithConfig(pub, cbc)
	if err != nil {
		b.Fatal(err)
	}
	proc, err := cqrs.NewCommandProcessorWithConfig(router, cpc)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{}, benchWindow)
	if err := proc.AddHandlers(cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
		done <- struct{}{}
		return nil
	})); err != nil {
		b.Fatal(err)
	}
	testsvc.RunRouter(b, router)

	send := inner.Send
	if obs != nil {
		bus, err := cqrsbus.NewCommandBus(inner, cqrsbus.CommandBusConfig{Marshaler: marshaler, Registry: reg})
		if err != nil {
			b.Fatal(err)
		}
		send = bus.Send
	}
	return send, done
}

// BenchmarkCommandSendHandleInterleaved runs plain, plain_with_contract,
// plain_making_contract, plain_whole_contract, hooks_disabled and
// hooks_registered_off in one process, taking turns of a few milliseconds (interleaveWindows windows of benchWindow commands each),
// and reports each variant's time per command and its overhead over plain. On a machine
// whose speed drifts over seconds (a shared virtual machine), separate runs
// compare one variant's fast phase with another's slow one; taking turns
// gives every variant the same share of every phase. full is left out: its
// garbage would be collected during the others' turns.
func BenchmarkCommandSendHandleInterleaved(b *testing.B) {
	modes := []string{"plain", "plain_with_contract", "plain_making_contract", "plain_whole_contract", "hooks_disabled", "hooks_registered_off"}
	type service struct {
		send func(context.Context, any) error
		done <-chan struct{}
	}
	services := make([]service, len(modes))
	for i, mode := range modes {
		send, done := benchService(b, mode, false)
		services[i] = service{send, done}
	}
	ctx := context.Background()
	cmd := &PlaceOrder{OrderID: "42"}
	turn := func(s service) {
		for range interleaveWindows {
			for range benchWindow {
				if err := s.send(ctx, cmd); err != nil {
					b.Fatal(err)
				}
			}
			for range benchWindow {
				<-s.done
			}
		}
	}
	for _, s := range services {
		turn(s) // warm up caches and the processors' subscriptions
	}
	const perTurn = interleaveWindows * benchWindow
	elapsed := make([]time.Duration, len(services))
	runtime.GC()
	b.ResetTimer()
	// Each round starts with the next variant, so that no variant always
	// follows the same one (the first turn after a switch finds colder
	// caches).
	for round, sent := 0, 0; sent < b.N; round, sent = round+1, sent+perTurn {
		for j := range services {
			i := (round + j) % len(services)
			start := time.Now()
			turn(services[i])
			elapsed[i] += time.Since(start)
		}
	}
	b.StopTimer()
	n := float64(max(b.N, perTurn))
	perCmd := make([]float64, len(modes))
	for i, mode := range modes {
		perCmd[i] = float64(elapsed[i].Nanoseconds()) / n
		b.ReportMetric(perCmd[i], mode+"_ns/cmd")
	}
	for i := 1; i < len(modes); i++ {
		b.ReportMetric(100*(perCmd[i]-perCmd[0])/perCmd[0], modes[i]+"_%_over_plain")
	}
	b.ReportMetric(0, "ns/op") // per-variant figures above; the op is a round of all
}

// interleaveWindows is how many windows of commands a variant sends per
// turn in BenchmarkCommandSendHandleInterleaved.
const interleaveWindows = 4
