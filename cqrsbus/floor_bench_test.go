package cqrsbus_test

import (
	"context"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// wholeContract is the least that DESIGN.md's metadata contract takes of a
// command's send and handling, written by hand with nothing of cqrsbus or
// contract: the floor that cqrsbus with its hooks disabled does the same
// work as. plain_making_contract only makes the contract's values; the
// contract also asks that user values are never overwritten, that the
// causation ID and the trace context travel (through the configured
// propagator, also when the service does not trace: it passes its caller's
// trace context on), that a message handled while it is republished is a
// new hop, and that what is read from metadata is validated.
type wholeContract struct {
	prop propagation.TextMapPropagator
}

// onSend stamps the contract onto a command about to be sent.
func (w wholeContract) onSend(p cqrs.CommandBusOnSendParams) error {
	msg := p.Message
	md := msg.Metadata
	ctx := msg.Context()
	v := hooks.Snapshot(ctx)
	setIfAbsent(md, contract.MessageKindKey, contract.KindCommand)
	setIfAbsent(md, contract.NameKey, p.CommandName)
	if _, ok := md[contract.CorrelationIDKey]; !ok {
		cid := v.CorrelationID
		if !bound.IsID(cid) {
			cid = hooks.NewCorrelationID()
		}
		md[contract.CorrelationIDKey] = cid
	}
	if hop := v.CausationID != "" && v.CausationID == msg.UUID; hop {
		delete(md, contract.TraceparentKey)
		delete(md, contract.TracestateKey)
	} else if bound.IsID(v.CausationID) {
		setIfAbsent(md, contract.CausationIDKey, v.CausationID)
	}
	if _, ok := md[contract.TraceparentKey]; !ok {
		w.prop.Inject(ctx, propagation.MapCarrier(md))
	}
	if _, ok := md[contract.PublishedAtKey]; !ok {
		md[contract.PublishedAtKey] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	return nil
}

// onHandle restores the conversation a command carries into the handler's
// context and calls the handler.
func (w wholeContract) onHandle(p cqrs.CommandProcessorOnHandleParams) error {
	return p.Handler.Handle(w.restore(p.Message), p.Command)
}

// restore returns the message's context with the trace context, the
// correlation ID (validated, else a new one) and, as causation ID, the
// message's UUID.
func (w wholeContract) restore(msg *message.Message) context.Context {
	ctx := w.prop.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
	cid := msg.Metadata.Get(contract.CorrelationIDKey)
	if !bound.IsID(cid) {
		cid = hooks.NewCorrelationID()
	}
	v := hooks.Vars{CorrelationID: cid}
	if bound.IsID(msg.UUID) {
		v.CausationID = msg.UUID
	}
	return hooks.Restore(ctx, v)
}

func setIfAbsent(md message.Metadata, key, value string) {
	if _, ok := md[key]; !ok {
		md[key] = value
	}
}
