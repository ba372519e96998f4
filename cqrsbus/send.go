package cqrsbus

import (
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// OnSend returns a cqrs.CommandBusConfig.OnSend function that stamps the
// metadata contract onto every command and then calls next, the function
// the configuration already had (nil for none). next runs exactly once per
// send, after the stamping, and its error is returned unchanged.
//
// The stamping writes, without overwriting values the message already has:
// message_kind "command", name (the command name, when the marshaler did
// not set it), and from the message's context (the context given to Send),
// as contract.Propagation.Inject does: the correlation ID (a new one if the
// context has none), the causation ID (the UUID of the message being handled
// when Send is called inside a handler instrumented by this package or by
// watermillobs), the trace context and
// published_at.
//
// A command sent with requestreply is a query. OnSend runs before the
// modify function that requestreply uses to mark its messages, so it cannot
// tell; [CommandBus] can, and corrects the kind after the modify function
// ran. Send queries through a [CommandBus] (or its [CommandBus.Queries]
// view) to get message_kind "query".
func (i *Instrumentation) OnSend(next cqrs.CommandBusOnSendFn) cqrs.CommandBusOnSendFn {
	return func(p cqrs.CommandBusOnSendParams) error {
		i.stamp(p.Message, contract.KindCommand, p.CommandName)
		if next != nil {
			return next(p)
		}
		return nil
	}
}

// OnPublish returns a cqrs.EventBusConfig.OnPublish function that stamps
// the metadata contract onto every event, as [Instrumentation.OnSend] does
// for commands but with message_kind "event", and then calls next (nil for
// none), exactly once, returning its error unchanged.
func (i *Instrumentation) OnPublish(next cqrs.OnEventSendFn) cqrs.OnEventSendFn {
	return func(p cqrs.OnEventSendParams) error {
		i.stamp(p.Message, contract.KindEvent, p.EventName)
		if next != nil {
			return next(p)
		}
		return nil
	}
}

// OnReply returns a requestreply.PubSubBackendConfig.ModifyNotificationMessage
// function that stamps the metadata contract onto every reply, then calls
// next (nil for none) exactly once and returns its error unchanged.
//
// A reply gets message_kind "reply", the correlation ID of the query it
// answers and, as causation ID, the query message's UUID; the trace context
// is the one of the handler's context, which requestreply gives the reply
// message, so the reply's send span (publisher wrapped with
// watermillobs.NewPublisher) sits in the query's trace.
func (i *Instrumentation) OnReply(next requestreply.PubSubBackendModifyNotificationMessageFn) requestreply.PubSubBackendModifyNotificationMessageFn {
	return func(msg *message.Message, p requestreply.PubSubBackendOnCommandProcessedParams) error {
		i.stampReply(msg, p.CommandMessage)
		if next != nil {
			return next(msg, p)
		}
		return nil
	}
}

// stamp writes kind, name and the metadata contract onto msg. A panic is
// recovered and logged: the message then leaves as if uninstrumented.
func (i *Instrumentation) stamp(msg *message.Message, kind, name string) {
	if msg == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			i.recovered(msg.Context(), "stamp message", v)
		}
	}()
	contract.SetIfAbsent(msg, contract.MessageKindKey, kind)
	contract.SetIfAbsent(msg, contract.NameKey, name)
	i.injectMetadata(msg.Context(), msg)
}

func (i *Instrumentation) stampReply(msg, query *message.Message) {
	if msg == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			i.recovered(msg.Context(), "stamp reply", v)
		}
	}()
	contract.SetIfAbsent(msg, contract.MessageKindKey, contract.KindReply)
	if query != nil {
		// The handler's context normally carries both; the query message is
		// the authority when it does not (a handler that dropped it).
		if id := query.Metadata.Get(contract.CorrelationIDKey); bound.IsID(id) {
			contract.SetIfAbsent(msg, contract.CorrelationIDKey, id)
		}
		if bound.IsID(query.UUID) {
			contract.SetIfAbsent(msg, contract.CausationIDKey, query.UUID)
		}
		if n := query.Metadata.Get(contract.NameKey); n != "" {
			contract.SetIfAbsent(msg, contract.NameKey, n)
		}
	}
	i.injectMetadata(msg.Context(), msg)
}

// isQueryMessage reports whether requestreply marked msg as awaiting a
// reply.
func isQueryMessage(msg *message.Message) bool {
	return msg.Metadata.Get(requestreply.OperationIDMetadataKey) != ""
}

// stampCommandKind and stampQueryKind are the modify functions of sends
// without a caller's modify function. They are plain functions, so passing
// them allocates nothing.
func stampCommandKind(msg *message.Message) error {
	if msg == nil {
		return nil
	}
	setKind(msg, msg.Metadata.Get(contract.MessageKindKey), isQueryMessage(msg))
	return nil
}

func stampQueryKind(msg *message.Message) error {
	if msg == nil {
		return nil
	}
	setKind(msg, msg.Metadata.Get(contract.MessageKindKey), true)
	return nil
}

// refineKind sets message_kind after all other stamping ran, as setKind
// does, unless the caller's modify function changed it: before is the kind
// as it was before that function ran.
func refineKind(msg *message.Message, before string, query bool) {
	if msg == nil {
		return
	}
	if kind := msg.Metadata.Get(contract.MessageKindKey); kind == before {
		setKind(msg, kind, query)
	}
}

// setKind sets message_kind from kind, the message's current one: "query"
// for a query unless a kind other than the default "command" is set, else
// "command" if no kind is set.
func setKind(msg *message.Message, kind string, query bool) {
	switch {
	case query && (kind == "" || kind == contract.KindCommand):
		if msg.Metadata == nil {
			msg.Metadata = make(message.Metadata)
		}
		msg.Metadata[contract.MessageKindKey] = contract.KindQuery
	case kind == "":
		contract.SetIfAbsent(msg, contract.MessageKindKey, contract.KindCommand)
	}
}

// kindModifier returns the modify function that the bus wrapper passes to
// the inner bus: modify (the caller's, may be nil) followed by the kind
// refinement.
func kindModifier(modify func(*message.Message) error, query bool) func(*message.Message) error {
	if modify == nil {
		if query {
			return stampQueryKind
		}
		return stampCommandKind
	}
	return func(msg *message.Message) error {
		before := msg.Metadata.Get(contract.MessageKindKey)
		if err := modify(msg); err != nil {
			return err
		}
		refineKind(msg, before, query || isQueryMessage(msg))
		return nil
	}
}
