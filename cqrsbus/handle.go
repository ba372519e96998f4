package cqrsbus

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// Hook operation families of the handling side; the full names append the
// message type (and, for event.handler, the handler name).
const (
	commandHandlePrefix = "command.handle."
	queryHandlePrefix   = "query.handle."
	eventDispatchPrefix = "event.dispatch."
	eventHandlerPrefix  = "event.handler."
)

// The hook operation families a handler call of each processor may run.
var (
	commandFamilies = []string{commandHandlePrefix, queryHandlePrefix}
	eventFamilies   = []string{eventDispatchPrefix, eventHandlerPrefix}
)

// Attributes of the cqrs.{MessageType} span.
const (
	// CommandTypeKey holds the message type (command, query or event name).
	// The reference names it after commands; it is set for every kind.
	CommandTypeKey = attribute.Key("cqrs.command_type")
	// CorrelationIDKey holds the correlation ID of the conversation.
	CorrelationIDKey = attribute.Key("cqrs.correlation_id")
	// OutcomeKey holds "success" or "error".
	OutcomeKey = attribute.Key("cqrs.outcome")
	// MessageKindKey holds the message kind: command, query or event.
	MessageKindKey = attribute.Key("cqrs.message_kind")
	// HandlerKey holds the name of the cqrs handler.
	HandlerKey = attribute.Key("cqrs.handler")
)

// Span attributes built once.
var (
	// outcomeSuccessAttrs is passed as it is: a variadic call through the
	// span interface would allocate a new slice per message.
	outcomeSuccessAttrs = []attribute.KeyValue{OutcomeKey.String(contract.OutcomeSuccess)}
	outcomeError        = OutcomeKey.String(contract.OutcomeError)
	errorTypePanic      = semconv.ErrorTypeKey.String("panic")
)

// OnCommandHandle returns a cqrs.CommandProcessorConfig.OnHandle function
// that observes the handling of every command and query, and calls next
// (the configuration's previous OnHandle; nil for none) or, when next is
// nil, the handler itself, as the processor would.
//
// Around the call it:
//
//   - restores the conversation into the message's context when the router
//     did not (no watermillobs.Instrument): the trace context from the
//     metadata, the correlation ID, and the message's UUID as causation ID
//     for whatever the handler sends;
//   - opens the span cqrs.{CommandType} with cqrs.command_type,
//     cqrs.correlation_id, cqrs.message_kind, cqrs.handler and, at the end,
//     cqrs.outcome; on error also error.type and status Error;
//   - runs the hook operation "command.handle.{CommandType}" (for a
//     message of kind query, "query.handle.{QueryType}") with the
//     attributes command.type (query.type), command.id (query.id),
//     handler.type, correlation_id and message_type;
//   - sets the resulting context on the message (msg.SetContext) and passes
//     it to the handler, so that what the handler sends continues the span
//     and the conversation. When the call returns, the message gets back
//     the context it came with, so outer middlewares see their own.
//
// With tracing switched off (a trace/noop TracerProvider) and no hook
// enabled for the command.handle and query.handle families, only the first
// and the last step remain: the handling costs the restoring of the
// conversation and nothing else.
//
// The handler's error is returned unchanged and a panic is re-raised
// unchanged after being recorded, so the processor, the router and its
// middlewares see what they would see without this package.
func (i *Instrumentation) OnCommandHandle(next cqrs.CommandProcessorOnHandleFn) cqrs.CommandProcessorOnHandleFn {
	// call is built once: per message, the params travel by value and
	// nothing is allocated for the call.
	call := func(ctx context.Context, p cqrs.CommandProcessorOnHandleParams) error {
		if next != nil {
			return next(p)
		}
		return p.Handler.Handle(ctx, p.Command)
	}
	return func(p cqrs.CommandProcessorOnHandleParams) error {
		if !i.observed(p.Message, commandFamilies) {
			return handleUnobserved(i, p.Message, p, call)
		}
		h := handling{name: p.CommandName, handler: handlerName(p.Handler)}
		return handle(i, p.Message, h, p, call)
	}
}

// OnEventHandle returns a cqrs.EventProcessorConfig.OnHandle function that
// observes the handling of every event and calls next (nil: the handler
// itself). It does what [Instrumentation.OnCommandHandle] does, with the
// hook operations "event.dispatch.{EventType}" around
// "event.handler.{EventType}.{HandlerType}" (attributes event.type,
// event.id, handler.type, correlation_id, message_type), where HandlerType
// is the handler's name.
//
// The EventProcessor gives every handler its own subscription, so each
// message reaches OnHandle once per handler, and event.dispatch runs once
// per handler's copy of the event.
func (i *Instrumentation) OnEventHandle(next cqrs.EventProcessorOnHandleFn) cqrs.EventProcessorOnHandleFn {
	call := func(ctx context.Context, p cqrs.EventProcessorOnHandleParams) error {
		if next != nil {
			return next(p)
		}
		return p.Handler.Handle(ctx, p.Event)
	}
	return func(p cqrs.EventProcessorOnHandleParams) error {
		if !i.observed(p.Message, eventFamilies) {
			return handleUnobserved(i, p.Message, p, call)
		}
		h := handling{name: p.EventName, handler: handlerName(p.Handler), event: true}
		return handle(i, p.Message, h, p, call)
	}
}

// OnEventGroupHandle returns a cqrs.EventGroupProcessorConfig.OnHandle
// function; see [Instrumentation.OnEventHandle]. The EventGroupProcessor
// calls OnHandle once per handler of the group that accepts the event, so a
// message handled by two handlers of a group gets two cqrs spans and two
// event.dispatch operations. The handler operations carry the group name as
// attribute handler.group, and name the handler by its HandlerName method
// when it has one that returns a non-empty name, else by the group name
// (handlers made with cqrs.NewGroupEventHandler have no name).
func (i *Instrumentation) OnEventGroupHandle(next cqrs.EventGroupProcessorOnHandleFn) cqrs.EventGroupProcessorOnHandleFn {
	call := func(ctx context.Context, p cqrs.EventGroupProcessorOnHandleParams) error {
		if next != nil {
			return next(p)
		}
		return p.Handler.Handle(ctx, p.Event)
	}
	return func(p cqrs.EventGroupProcessorOnHandleParams) error {
		if !i.observed(p.Message, eventFamilies) {
			return handleUnobserved(i, p.Message, p, call)
		}
		h := handling{name: p.EventName, handler: groupHandlerName(p.Handler, p.GroupName), group: p.GroupName, event: true}
		return handle(i, p.Message, h, p, call)
	}
}

// handling describes one handler call.
type handling struct {
	name    string // message type, from the name metadata: untrusted
	handler string
	group   string
	event   bool
}

func handlerName(h interface{ HandlerName() string }) (name string) {
	if h == nil {
		return ""
	}
	defer func() {
		if recover() != nil {
			name = ""
		}
	}()
	return bound.String(h.HandlerName(), bound.Attribute)
}

// groupHandlerName names a handler of a group: its HandlerName when it has
// a non-empty one, else the group's name. Group handlers made with
// cqrs.NewGroupEventHandler have no name of their own.
func groupHandlerName(h cqrs.GroupEventHandler, group string) string {
	if named, ok := h.(interface{ HandlerName() string }); ok {
		if n := handlerName(named); n != "" {
			return n
		}
	}
	return bound.String(group, bound.Attribute)
}

// observed reports whether a handler call of msg is observed beyond the
// conversation: by a span (a tracer other than the no-op one) or by a hook
// enabled for one of families.
func (i *Instrumentation) observed(msg *message.Message, families []string) bool {
	if i.tracer != nil {
		return true
	}
	if msg == nil {
		return false
	}
	reg := registryFor(i.registry, msg.Context())
	for _, f := range families {
		if reg.EnabledPrefix(f) {
			return true
		}
	}
	return false
}

// handleUnobserved runs call in the conversation msg carries, when nothing
// observes the call (see [Instrumentation.observed]): the handler's sends
// still continue the trace and the conversation, and nothing else is made
// of the message (its type, kind and handler name are not even read).
func handleUnobserved[P any](i *Instrumentation, msg *message.Message, p P, call func(context.Context, P) error) error {
	if msg == nil {
		return call(context.Background(), p)
	}
	orig := msg.Context()
	defer msg.SetContext(orig) // also when the handler panics; see handle
	ctx := i.restore(msg)
	msg.SetContext(ctx)
	return call(ctx, p)
}

// handle runs call inside the conversation, the cqrs span and the hook
// operations of h.
func handle[P any](i *Instrumentation, msg *message.Message, h handling, p P, call func(context.Context, P) error) (err error) {
	if msg == nil {
		return call(context.Background(), p)
	}
	typ := bound.String(h.name, bound.Attribute)
	kind := contract.MessageKind(msg)
	if kind == contract.KindMessage {
		if h.event {
			kind = contract.KindEvent
		} else {
			kind = contract.KindCommand
		}
	}
	// The message gets its context back when the call returns: outer
	// middlewares (logging) and the group processor's next handler must see
	// the router's context, not this call's ended span.
	orig := msg.Context()
	ctx := i.restore(msg)
	ctx, span := spans.Start(ctx, i.tracer, i.recovered, i.names.Get(typ), i.startOpts...)
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, CommandTypeKey.String(typ), MessageKindKey.String(kind))
		if cid := hooks.CorrelationID(ctx); cid != "" {
			attrs = append(attrs, CorrelationIDKey.String(bound.String(cid, bound.Attribute)))
		}
		if h.handler != "" {
			attrs = append(attrs, HandlerKey.String(h.handler))
		}
		span.SetAttributes(attrs...)
	}
	msg.SetContext(ctx)

	returned := false
	defer func() {
		if returned {
			return
		}
		msg.SetContext(orig)
		// A nil value means runtime.Goexit: not a panic to record or stop.
		if v := recover(); v != nil {
			span.SetAttributes(outcomeError, errorTypePanic)
			span.SetStatus(codes.Error, bound.String(fmt.Sprint(v), bound.Error))
			spans.End(ctx, span, i.recovered)
			panic(v)
		}
		spans.End(ctx, span, i.recovered)
	}()
	err = runOperations(i, ctx, msg, h, typ, kind, p, call)
	returned = true
	msg.SetContext(orig)
	if err != nil {
		span.SetAttributes(outcomeError, semconv.ErrorType(err))
		// fmt recovers from a panicking Error method; err.Error() would not.
		span.SetStatus(codes.Error, bound.String(fmt.Sprint(err), bound.Error))
	} else {
		span.SetAttributes(outcomeSuccessAttrs...)
	}
	spans.End(ctx, span, i.recovered)
	return err
}

// runOperations runs call inside the hook operations of h, when a hook
// observes them.
func runOperations[P any](i *Instrumentation, ctx context.Context, msg *message.Message, h handling, typ, kind string, p P, call func(context.Context, P) error) error {
	reg := registryFor(i.registry, ctx)
	if !h.event {
		prefix := commandHandlePrefix
		if kind == contract.KindQuery {
			prefix = queryHandlePrefix
		}
		if !reg.EnabledPrefix(prefix) {
			return call(ctx, p)
		}
		attrs := i.operationAttrs(ctx, msg, h, typ, kind)
		return i.run(ctx, reg, msg, prefix+typ, attrs, func(ctx context.Context) error { return call(ctx, p) })
	}

	dispatch, perHandler := reg.EnabledPrefix(eventDispatchPrefix), reg.EnabledPrefix(eventHandlerPrefix)
	if !dispatch && !perHandler {
		return call(ctx, p)
	}
	attrs := i.operationAttrs(ctx, msg, h, typ, kind)
	handler := func(ctx context.Context) error { return call(ctx, p) }
	inner := handler
	if perHandler {
		inner = func(ctx context.Context) error {
			return i.run(ctx, reg, msg, eventHandlerPrefix+typ+"."+h.handler, attrs, handler)
		}
	}
	if !dispatch {
		return inner(ctx)
	}
	// event.dispatch carries no handler.type in the reference.
	dispatchAttrs := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		if a.Key != "handler.type" && a.Key != "handler.group" {
			dispatchAttrs = append(dispatchAttrs, a)
		}
	}
	return i.run(ctx, reg, msg, eventDispatchPrefix+typ, dispatchAttrs, inner)
}

func (i *Instrumentation) operationAttrs(ctx context.Context, msg *message.Message, h handling, typ, kind string) []slog.Attr {
	prefix := kind
	if kind != contract.KindQuery && kind != contract.KindEvent {
		prefix = contract.KindCommand
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs,
		slog.String(prefix+".type", typ),
		slog.String(prefix+".id", bound.String(msg.UUID, bound.Attribute)),
	)
	if h.handler != "" {
		attrs = append(attrs, slog.String("handler.type", h.handler))
	}
	if h.group != "" {
		attrs = append(attrs, slog.String("handler.group", bound.String(h.group, bound.Attribute)))
	}
	if cid := hooks.CorrelationID(ctx); cid != "" {
		attrs = append(attrs, slog.String(contract.CorrelationIDKey, bound.String(cid, bound.Attribute)))
	}
	return append(attrs, slog.String(hooks.MessageTypeKey, typ))
}

// run runs call inside the hook operation name. The context the hooks pass
// on becomes the message's context, so a span a hook starts is the parent
// of the handler's work. A hook's error is returned (the message is nacked);
// a hook that panicked is logged and counted and the handler's result kept,
// or the handler called directly if it did not run yet.
func (i *Instrumentation) run(ctx context.Context, reg *hooks.Registry, msg *message.Message, name string, attrs []slog.Attr, call func(context.Context) error) error {
	return contract.RunHooks(ctx, reg, name, attrs, func(ctx context.Context) error {
		msg.SetContext(ctx)
		return call(ctx)
	}, func(ctx context.Context, e *hooks.HookPanicError) {
		panics.Report(ctx, i.logger, "cqrsbus: hook panicked; message handled without hooks", e.Value,
			slog.String("hook", e.Hook),
			slog.String("operation", e.Operation),
			slog.String("message_uuid", bound.String(msg.UUID, bound.Attribute)))
	})
}

// restore returns the message's context with the conversation the message
// carries: unchanged when the router's watermillobs middlewares already put
// it there (the causation ID is the message's own UUID), else with the
// trace context from the metadata (unless a local span is active) and the
// correlation and causation IDs.
func (i *Instrumentation) restore(msg *message.Message) (ctx context.Context) {
	ctx = msg.Context()
	defer func() {
		if v := recover(); v != nil {
			i.recovered(ctx, "restore context", v)
		}
	}()
	if v := hooks.Snapshot(ctx); v.CausationID == msg.UUID && v.CorrelationID != "" {
		return ctx
	}
	if sc := trace.SpanContextFromContext(ctx); !sc.IsValid() || sc.IsRemote() {
		return i.extractContext(ctx, msg)
	}
	// A local span is active (a tracing middleware without the correlation
	// one): keep it, add the IDs.
	return contract.WithMessageCorrelation(ctx, msg)
}
