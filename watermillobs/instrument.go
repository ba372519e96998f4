package watermillobs

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
)

// ErrNilRouter is returned by [Instrument] for a nil router.
var ErrNilRouter = errors.New("watermillobs: nil router")

// InstrumentConfig holds the settings that only [Instrument] reads: what it
// installs besides correlation, tracing, logging and the hook operations.
// The zero value installs just those.
type InstrumentConfig struct {
	// Tracing configures the consumer spans (see [TracingConfig]).
	Tracing TracingConfig
	// PayloadTracing, if set, installs the payload tracing middleware
	// inside the span. Its Logger defaults to the WithLogger one. If nil,
	// payloads are not traced.
	PayloadTracing *payloadtrace.Tracing
	// Backends are observability backends from other packages, such as
	// promobs and sentryobs, installed inside the span in the given order.
	// Nil backends are ignored.
	Backends []Backend
	// Retry, if set, is a retry middleware, such as
	// middleware.Retry{MaxRetries: 3}.Middleware, installed inside the
	// backends and the span and outside [ConsumeHooks], wrapped with
	// [CountAttempts]. Sentry, the metrics, the logs and the span then see
	// one final outcome per delivery instead of one per attempt, and
	// sentryobs tags the event with the number of attempts.
	Retry message.HandlerMiddleware
}

// Instrument installs the recommended set of middlewares and decorators on
// a router, in this order (outermost first):
//
//  1. [Correlation]: correlation and causation IDs in and out;
//  2. [Tracing]: a "process {topic}" span per message;
//  3. [payloadtrace.Tracing], if config.PayloadTracing is set;
//  4. [Logging]: one JSON record per message;
//  5. the HandlerMiddleware of each of config.Backends (promobs,
//     sentryobs), in the given order, inside the span;
//  6. config.Retry, wrapped with [CountAttempts], so that everything above
//     sees one final outcome per delivery and sentryobs can tag it with the
//     number of attempts;
//  7. [ConsumeHooks]: the "consumer.consume.{EventType}" hook operation,
//     run once per attempt.
//
// The router runs middlewares in the order they were added, the first one
// outermost, whether they were added to the router or to a handler. The
// recommended order for a handler that can fail is therefore: the poison
// queue first, so that it only sees the error of the last attempt, then
// Instrument with the retry in config.Retry:
//
//	poison, err := middleware.PoisonQueue(publisher, "orders.poison")
//	if err != nil { ... }
//	router.AddMiddleware(poison)
//	err = watermillobs.Instrument(router, watermillobs.InstrumentConfig{
//		Backends: []watermillobs.Backend{metrics, sentryobs.New()},
//		Retry:    middleware.Retry{MaxRetries: 3}.Middleware,
//	})
//
// A retry added with router.AddMiddleware before Instrument would instead
// run outside the span and the backends, which would then report every
// attempt: one Sentry event, error log and failed-message count per retry.
//
// It also decorates the router's publisher with [PublisherDecorator]
// outermost and the backends' publisher decorators inside it, so that every
// message the handlers return is published with a send span and the
// metadata contract, and backends see both. Messages that handlers publish
// through their own publisher need that publisher wrapped with
// [NewPublisher].
//
// Call it before running the router; opts apply to every part.
func Instrument(r *message.Router, config InstrumentConfig, opts ...Option) error {
	if r == nil {
		return ErrNilRouter
	}
	c := newConfig(opts)
	r.AddMiddleware(Correlation(opts...), Tracing(config.Tracing, opts...))
	if config.PayloadTracing != nil {
		p := *config.PayloadTracing
		if p.Logger == nil {
			p.Logger = c.Logger
		}
		r.AddMiddleware(p.Middleware)
	}
	r.AddMiddleware(Logging(opts...))
	backends := make([]Backend, 0, len(config.Backends))
	for _, b := range config.Backends {
		if b != nil {
			backends = append(backends, b)
		}
	}
	for _, b := range backends {
		r.AddMiddleware(b.HandlerMiddleware())
	}
	if config.Retry != nil {
		r.AddMiddleware(CountAttempts(config.Retry))
	}
	r.AddMiddleware(ConsumeHooks(opts...))

	// The router applies publisher decorators so that the first one added
	// is the outermost: ours goes first, so that backends see the send span
	// and the metadata it writes.
	r.AddPublisherDecorators(PublisherDecorator(opts...))
	for _, b := range backends {
		if pb, ok := b.(PublisherBackend); ok {
			r.AddPublisherDecorators(pb.PublisherDecorator())
		}
	}
	return nil
}
