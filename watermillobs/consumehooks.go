package watermillobs

import (
	"context"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// consumeOpPrefix is the family of the operations ConsumeHooks runs.
const consumeOpPrefix = "consumer.consume."

// ConsumeHooks returns a router middleware that runs each handler call
// inside the hook operation "consumer.consume.{type}", where type is
// [contract.MessageType] of the message: its "name" metadata, else the router
// handler's name. Hooks registered for that family (tracing, metrics, audit,
// rate limiting) thus see every consumed message.
//
// The registry is the one given with [WithHookRegistry], else the one carried by
// the message's context ([hooks.FromContext]), else [hooks.Default].
// Other options are ignored, except [WithLogger] (see below).
//
// The operation's attributes are "event.type" and "message_type" (both the
// message type; the latter is what [hooks.WithMessageTypes] filters on),
// "correlation_id" ([contract.CorrelationID], omitted when empty), "message.id" (the
// message UUID), and "handler" and "topic" (from the router, omitted outside
// one). Values are bounded to 256 bytes of valid UTF-8.
//
// When no enabled hook is registered for the family, the handler is called
// directly: no name or attributes are built and nothing is allocated.
//
// Inside the process span of [Tracing], the span hook of
// [InstallFrameworkHooks] opens no second span for the operation: the
// process span already stands for the message's handling. When that hook is
// the only one enabled for the family, the handler is then called directly,
// as if nothing observed it. Without [Tracing], the span hook's span is the
// only one.
//
// The handler runs with the context the hooks pass on: the middleware sets
// it with msg.SetContext, so a span started by a hook is the parent of the
// handler's work, and leaves it set after returning. The messages and error
// the handler returns are returned unchanged, and a panic of the handler
// reaches the router unchanged and unrecovered, so that a Recoverer
// middleware outside reports the handler's own stack.
//
// An error returned by a hook, such as a rate-limit hook refusing the
// operation, is returned as the handler's error, so the router nacks the
// message and it is redelivered. A panicking hook is a bug, not a refusal:
// it is logged at level Error (to [WithLogger], else slog.Default), counted
// (see [RecoveredPanics]) and the
// message is processed as if uninstrumented, keeping the handler's result
// if the handler already ran, else calling the handler directly.
func ConsumeHooks(opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	m := &consumeHooks{registry: c.Registry, logger: c.logger()}
	return m.middleware
}

type consumeHooks struct {
	registry *hooks.Registry // nil: from the message's context
	logger   *slog.Logger
}

func (m *consumeHooks) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		reg := registryOr(m.registry, msg.Context())
		if !observedBesidesSpanHook(msg.Context(), reg, consumeOpPrefix) {
			return h(msg)
		}
		return m.run(reg, msg, h)
	}
}

func (m *consumeHooks) run(reg *hooks.Registry, msg *message.Message, h message.HandlerFunc) ([]*message.Message, error) {
	ctx := msg.Context()
	msgType := contract.MessageType(msg)
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs,
		slog.String("event.type", msgType),
		slog.String(hooks.MessageTypeKey, msgType),
	)
	if id := contract.CorrelationID(msg); id != "" {
		attrs = append(attrs, slog.String(contract.CorrelationIDKey, bound.String(id, bound.Attribute)))
	}
	attrs = append(attrs, slog.String("message.id", bound.String(msg.UUID, bound.Attribute)))
	if name := message.HandlerNameFromCtx(ctx); name != "" {
		attrs = append(attrs, slog.String("handler", bound.String(name, bound.Attribute)))
	}
	if topic := message.SubscribeTopicFromCtx(ctx); topic != "" {
		attrs = append(attrs, slog.String("topic", bound.String(topic, bound.Attribute)))
	}

	var produced []*message.Message
	name := consumeOpPrefix + msgType
	err := contract.RunHooks(withCoverage(ctx, name), reg, name, attrs, func(ctx context.Context) error {
		msg.SetContext(ctx)
		var err error
		produced, err = h(msg)
		return err
	}, func(ctx context.Context, e *hooks.HookPanicError) {
		panics.Report(ctx, m.logger, "consume hook panicked; message processed without hooks", e.Value,
			slog.String("hook", e.Hook),
			slog.String("operation", e.Operation),
			slog.String("message_uuid", bound.String(msg.UUID, bound.Attribute)))
	})
	return produced, err
}
