package watermillobs

import (
	"context"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
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
	prop := c.propagation()
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			msg.SetContext(contract.WithMessageCorrelation(msg.Context(), msg))
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

// stampProduced writes the metadata contract of the handler context ctx
// onto a message the handler returned, as a decorated publisher would (see
// contract.Propagation.Inject): the consumed message returned as is (a
// forward) is a new hop, keeping its causation ID. A message built without
// a context gets the handler's, so decorated publishers continue the
// handler's span.
func stampProduced(ctx context.Context, prop *contract.Propagation, p *message.Message) {
	if p.Context() == context.Background() {
		p.SetContext(ctx)
	}
	prop.Inject(ctx, p)
}
