package cqrsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// Hook operation families run by the bus wrappers; the full name appends
// the message type.
const (
	commandSendPrefix  = "command.send."
	querySendPrefix    = "query.send."
	eventPublishPrefix = "event.publish."
)

// CommandSender is what code that sends commands needs. [CommandBus],
// [QueryBus] and *cqrs.CommandBus implement it, so callers can depend on it
// and receive either the instrumented or the plain bus.
type CommandSender interface {
	// Send sends cmd.
	Send(ctx context.Context, cmd any) error
	// SendWithModifiedMessage sends cmd after modify changed its message.
	SendWithModifiedMessage(ctx context.Context, cmd any, modify func(*message.Message) error) error
}

// EventPublisher is what code that publishes events needs. [EventBus] and
// *cqrs.EventBus implement it.
type EventPublisher interface {
	// Publish publishes event.
	Publish(ctx context.Context, event any) error
}

// The wrappers and Watermill's buses satisfy the interfaces callers use.
var (
	_ CommandSender           = (*CommandBus)(nil)
	_ CommandSender           = (*QueryBus)(nil)
	_ CommandSender           = (*cqrs.CommandBus)(nil)
	_ requestreply.CommandBus = (*CommandBus)(nil)
	_ requestreply.CommandBus = (*QueryBus)(nil)
	_ EventPublisher          = (*EventBus)(nil)
	_ EventPublisher          = (*cqrs.EventBus)(nil)
)

// CommandBusConfig configures a [CommandBus].
type CommandBusConfig struct {
	// Marshaler names the commands for the hook operations. Give the
	// marshaler of the wrapped bus. It is required.
	Marshaler cqrs.CommandEventMarshaler

	// Registry runs the command.send.* and query.send.* operations. If not
	// set, the registry of each call's context is used (hooks.FromContext).
	Registry *hooks.Registry

	// Logger receives hooks that panicked around a send. If not set,
	// slog.Default is used.
	Logger *slog.Logger
}

// Validate reports every problem of the configuration.
func (c CommandBusConfig) Validate() error {
	var err error
	if c.Marshaler == nil {
		err = errors.Join(err, errors.New("missing Marshaler"))
	}
	return err
}

// CommandBus wraps a *cqrs.CommandBus: it runs every send inside the hook
// operation "command.send.{CommandType}" (or "query.send.{QueryType}" for
// [QueryBus]) and stamps message_kind, telling queries sent with
// requestreply from commands. It implements requestreply.CommandBus, so it
// can be given to requestreply.SendWithReply.
//
// When no enabled hook observes the family, a send costs what the wrapped
// bus costs plus one check of the registry. When a hook does, and the
// context has no correlation ID, a new one is put into the context first, so
// that the hooks and the message agree on it.
//
// The metadata contract (correlation, causation, trace context) is written
// by [Instrumentation.OnSend] in the wrapped bus's configuration or by a
// publisher wrapped with watermillobs.NewPublisher; the wrapper itself only
// stamps the kind.
type CommandBus struct {
	bus       *cqrs.CommandBus
	marshaler cqrs.CommandEventMarshaler
	registry  *hooks.Registry
	logger    *slog.Logger
}

// NewCommandBus wraps bus. bus must not be nil.
func NewCommandBus(bus *cqrs.CommandBus, config CommandBusConfig) (*CommandBus, error) {
	if bus == nil {
		return nil, errors.New("missing bus")
	}
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return &CommandBus{bus: bus, marshaler: config.Marshaler, registry: config.Registry, logger: config.Logger}, nil
}

// Send sends cmd through the wrapped bus.
func (b *CommandBus) Send(ctx context.Context, cmd any) error {
	return b.send(ctx, cmd, nil, false)
}

// SendWithModifiedMessage sends cmd through the wrapped bus after modify
// changed its message. A message that modify marks as awaiting a reply
// (requestreply does) gets message_kind "query"; the hook operation is
// still "command.send.*", as the wrapper cannot know before modify runs.
// Send queries through [CommandBus.Queries] to get "query.send.*".
func (b *CommandBus) SendWithModifiedMessage(ctx context.Context, cmd any, modify func(*message.Message) error) error {
	return b.send(ctx, cmd, modify, false)
}

// Queries returns a view of the bus that sends queries: messages get
// message_kind "query" and sends run the hook operation
// "query.send.{QueryType}". Give it to requestreply:
//
//	reply, err := requestreply.SendWithReply[Status](ctx, bus.Queries(), backend, &GetOrderStatus{ID: id})
func (b *CommandBus) Queries() *QueryBus { return &QueryBus{b: b} }

// QueryBus sends queries: commands whose handler replies through
// components/requestreply. Get one from [CommandBus.Queries].
type QueryBus struct{ b *CommandBus }

// Send sends query.
func (q *QueryBus) Send(ctx context.Context, query any) error {
	return q.b.send(ctx, query, nil, true)
}

// SendWithModifiedMessage sends query after modify changed its message.
func (q *QueryBus) SendWithModifiedMessage(ctx context.Context, query any, modify func(*message.Message) error) error {
	return q.b.send(ctx, query, modify, true)
}

func (b *CommandBus) send(ctx context.Context, cmd any, modify func(*message.Message) error, query bool) error {
	mod := kindModifier(modify, query)
	prefix, typeKey := commandSendPrefix, "command.type"
	if query {
		prefix, typeKey = querySendPrefix, "query.type"
	}
	reg := registryFor(b.registry, ctx)
	if !reg.EnabledPrefix(prefix) {
		return b.bus.SendWithModifiedMessage(ctx, cmd, mod)
	}
	ctx, attrs, typ := sendAttrs(ctx, typeKey, b.marshaler, cmd)
	return contract.RunHooks(ctx, reg, prefix+typ, attrs, func(ctx context.Context) error {
		return b.bus.SendWithModifiedMessage(ctx, cmd, mod)
	}, sendHookPanicked(b.logger))
}

// EventBusConfig configures an [EventBus].
type EventBusConfig struct {
	// Marshaler names the events for the hook operations. Give the
	// marshaler of the wrapped bus. It is required.
	Marshaler cqrs.CommandEventMarshaler

	// Registry runs the event.publish.* operations. If not set, the
	// registry of each call's context is used (hooks.FromContext).
	Registry *hooks.Registry

	// Logger receives hooks that panicked around a publish. If not set,
	// slog.Default is used.
	Logger *slog.Logger
}

// Validate reports every problem of the configuration.
func (c EventBusConfig) Validate() error {
	var err error
	if c.Marshaler == nil {
		err = errors.Join(err, errors.New("missing Marshaler"))
	}
	return err
}

// EventBus wraps a *cqrs.EventBus: it runs every publish inside the hook
// operation "event.publish.{EventType}". The metadata contract, including
// message_kind "event", is written by [Instrumentation.OnPublish] in the
// wrapped bus's configuration (the event bus has no per-call modify
// function) or by a publisher wrapped with watermillobs.NewPublisher.
type EventBus struct {
	bus       *cqrs.EventBus
	marshaler cqrs.CommandEventMarshaler
	registry  *hooks.Registry
	logger    *slog.Logger
}

// NewEventBus wraps bus. bus must not be nil.
func NewEventBus(bus *cqrs.EventBus, config EventBusConfig) (*EventBus, error) {
	if bus == nil {
		return nil, errors.New("missing bus")
	}
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	return &EventBus{bus: bus, marshaler: config.Marshaler, registry: config.Registry, logger: config.Logger}, nil
}

// Publish publishes event through the wrapped bus.
func (b *EventBus) Publish(ctx context.Context, event any) error {
	reg := registryFor(b.registry, ctx)
	if !reg.EnabledPrefix(eventPublishPrefix) {
		return b.bus.Publish(ctx, event)
	}
	ctx, attrs, typ := sendAttrs(ctx, "event.type", b.marshaler, event)
	return contract.RunHooks(ctx, reg, eventPublishPrefix+typ, attrs, func(ctx context.Context) error {
		return b.bus.Publish(ctx, event)
	}, sendHookPanicked(b.logger))
}

// sendHookPanicked logs and counts a hook that panicked around a send: the
// send then happens exactly once, as if unobserved (see internal/hookrun).
func sendHookPanicked(logger *slog.Logger) contract.ReportFunc {
	return func(ctx context.Context, e *hooks.HookPanicError) {
		panics.Report(ctx, logger, "cqrsbus: send hook panicked; message sent without hooks", e.Value,
			slog.String("hook", e.Hook), slog.String("operation", e.Operation))
	}
}

// sendAttrs makes sure ctx has a correlation ID and returns the attributes
// of a send operation and the bounded message type.
func sendAttrs(ctx context.Context, typeKey string, m cqrs.CommandEventMarshaler, v any) (context.Context, []slog.Attr, string) {
	typ := bound.String(m.Name(v), bound.Attribute)
	cid := hooks.CorrelationID(ctx)
	if !bound.IsID(cid) {
		cid = hooks.NewCorrelationID()
		ctx = hooks.WithCorrelationID(ctx, cid)
	}
	return ctx, []slog.Attr{
		slog.String(typeKey, typ),
		slog.String(contract.CorrelationIDKey, cid),
		slog.String(hooks.MessageTypeKey, typ),
	}, typ
}
