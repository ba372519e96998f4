package cqrsbus

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// injectMetadata writes the metadata contract (correlation and causation
// IDs, trace context, published_at) without overwriting values, through
// the Propagation resolved in New.
func (i *Instrumentation) injectMetadata(ctx context.Context, msg *message.Message) {
	i.prop.Inject(ctx, msg)
}

// extractContext restores the remote span context, baggage, correlation ID
// and causation ID of msg into ctx.
func (i *Instrumentation) extractContext(ctx context.Context, msg *message.Message) context.Context {
	return i.prop.Extract(ctx, msg)
}
