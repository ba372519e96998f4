package watermillobs

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// Correlation returns a router middleware that carries the conversation
// through a handler:
//
//   - the consumed message's correlation ID (from its metadata, else a new
//     one) and, as causation ID, the consumed message's UUID are put into the
//     message context, where hooks, logs and publishers pick them up;
//   - the messages the handler returns get the correlation ID, the causation
//     ID and the handler's trace context in their metadata (values they
//     already have are kept), and the handler's context, so that an
//     AddHandler chain keeps one trace and one correlation ID. Watermill's
//     router copies neither.
//
// Install it outside (before) the tracing middleware; [Instrument] does.
// It is cheap: two context values per message and the stamping of returned
// messages.
func Correlation(opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	prop := c.propagator()
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			msg.SetContext(WithMessageCorrelation(msg.Context(), msg))
			produced, err := h(msg)
			if err != nil || len(produced) == 0 {
				return produced, err
			}
			// Inner middlewares (tracing) replaced the context with the
			// handler's span context: that is what produced messages continue.
			ctx := msg.Context()
			for _, p := range produced {
				if p != nil {
					stampProduced(ctx, prop, p)
				}
			}
			return produced, nil
		}
	}
}

// stampProduced writes the correlation, causation and trace context of the
// handler context ctx onto a message the handler returned. The consumed
// message returned as is (a forward) is a new hop: it keeps its causation
// ID and gets the handler's trace context (see stampMessage).
func stampProduced(ctx context.Context, prop propagation.TextMapPropagator, p *message.Message) {
	v := hooks.Snapshot(ctx) // one walk of ctx for both IDs
	SetIfAbsent(p, CorrelationIDKey, v.CorrelationID)
	if isHop(v, p) {
		dropTrace(p.Metadata)
	} else {
		SetIfAbsent(p, CausationIDKey, v.CausationID)
	}
	_, userSet := p.Metadata[TraceparentKey]
	tp := injectTrace(ctx, prop, p, "")
	pctx := p.Context()
	if pctx == context.Background() {
		// The handler built the message without a context: give it the
		// handler's, so decorated publishers continue the handler's span.
		pctx = ctx
	}
	if !userSet && tp != "" {
		pctx = context.WithValue(pctx, stampedTraceKey{}, tp)
	}
	p.SetContext(pctx)
}
