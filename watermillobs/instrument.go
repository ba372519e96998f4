package watermillobs

import (
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrNilRouter is returned by [Instrument] for a nil router.
var ErrNilRouter = errors.New("watermillobs: nil router")

// Instrument installs the recommended set of middlewares and decorators on
// a router, in this order (outermost first):
//
//  1. [Correlation]: correlation and causation IDs in and out;
//  2. [Tracing]: a "process {topic}" span per message;
//  3. [payloadtrace.Tracing], if configured with [WithPayloadTracing];
//  4. [Logging]: one JSON record per message;
//  5. the HandlerMiddleware of each backend given with [WithBackends]
//     (promobs, sentryobs), in the given order, inside the span;
//  6. the retry middleware given with [WithRetry], wrapped with
//     [CountAttempts], so that everything above sees one final outcome per
//     delivery and sentryobs can tag it with the number of attempts;
//  7. [ConsumeHooks]: the "consumer.consume.{EventType}" hook operation,
//     run once per attempt.
//
// The router runs middlewares in the order they were added, the first one
// outermost, whether they were added to the router or to a handler. The
// recommended order for a handler that can fail is therefore: the poison
// queue first, so that it only sees the error of the last attempt, then
// Instrument with the retry given through WithRetry:
//
//	poison, err := middleware.PoisonQueue(publisher, "orders.poison")
//	if err != nil { ... }
//	router.AddMiddleware(poison)
//	err = watermillobs.Instrument(router,
//		watermillobs.WithBackends(promobs.New(...), sentryobs.New()),
//		watermillobs.WithRetry(middleware.Retry{MaxRetries: 3}.Middleware),
//	)
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
// Call it before running the router; the options apply to every part.
func Instrument(r *message.Router, opts ...Option) error {
	if r == nil {
		return ErrNilRouter
	}
	c := newConfig(opts)
	r.AddMiddleware(Correlation(opts...), Tracing(opts...))
	if c.Payload != nil {
		p := *c.Payload
		if p.Logger == nil {
			p.Logger = c.Logger
		}
		r.AddMiddleware(p.Middleware)
	}
	r.AddMiddleware(Logging(opts...))
	for _, b := range c.Backends {
		r.AddMiddleware(b.HandlerMiddleware())
	}
	if retry := retryFrom(opts); retry != nil {
		r.AddMiddleware(CountAttempts(retry))
	}
	r.AddMiddleware(ConsumeHooks(opts...))

	// The router applies publisher decorators so that the first one added
	// is the outermost: ours goes first, so that backends see the send span
	// and the metadata it writes.
	r.AddPublisherDecorators(PublisherDecorator(opts...))
	for _, b := range c.Backends {
		if pb, ok := b.(PublisherBackend); ok {
			r.AddPublisherDecorators(pb.PublisherDecorator())
		}
	}
	return nil
}
