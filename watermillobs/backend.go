package watermillobs

import "github.com/ThreeDotsLabs/watermill/message"

// A Backend is an observability backend that lives in its own package
// (promobs, sentryobs) so that programs which do not use it do not link its
// dependencies. [Instrument] installs its router middleware after the
// tracing middleware, so the backend sees the message's span, and outside
// the retry of InstrumentConfig.Retry, so it sees one final outcome per delivery and
// can read [Attempts] once the handler has returned.
type Backend interface {
	HandlerMiddleware() message.HandlerMiddleware
}

// A PublisherBackend is a [Backend] that also observes publishing.
// [Instrument] adds its decorator to the router's publisher, inside the
// tracing decorator.
type PublisherBackend interface {
	Backend
	PublisherDecorator() message.PublisherDecorator
}
