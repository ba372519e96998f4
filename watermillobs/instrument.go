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
//  3. [PayloadTracing], if configured with [WithPayloadTracing];
//  4. [Logging]: one JSON record per message;
//  5. the HandlerMiddleware of each backend given with [WithBackends]
//     (promobs, sentryobs), in the given order, inside the span;
//  6. [ConsumeHooks]: the "consumer.consume.{EventType}" hook operation.
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
