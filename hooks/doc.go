// Package hooks is the core of watermill-observability: a registry of hooks
// that wrap named operations, and correlation and causation IDs carried in a
// [context.Context].
//
// Every instrumented component (publishers, consumers, CQRS buses, the outbox,
// sagas, projections) runs its work through [Registry.Run] under a dotted
// operation name such as "publisher.publish.orders" or "saga.run.OrderSaga".
// The registry runs the hooks whose registrations match that name as a
// pipeline around the work, so one registration can add tracing, metrics,
// audit, rate limiting or slow-operation logging to a whole family of
// operations:
//
//	reg := hooks.NewRegistry()
//	_, err := reg.Register(slowLog, hooks.WithOperations("publisher.*", "*.commit"))
//	...
//	err = reg.Run(ctx, "uow.commit", attrs, func(ctx context.Context) error {
//		return tx.Commit()
//	})
//
// # Matching
//
// Operation patterns are fnmatch-style globs over the whole dotted name:
// '*' matches any run of characters (dots included), '?' one character, and
// '[...]' a character class ('[!...]' or '[^...]' negates it, '\' escapes).
// A registration without patterns matches every operation. Registrations can
// further be narrowed by message type (the "message_type" attribute) and by a
// predicate over the name and attributes.
//
// # Performance
//
// Run sits on every message's hot path. The set of registrations whose
// patterns match a name is cached per name, so an operation that no hook
// wants costs a map lookup and no allocation. Callers that build the name
// or the attributes of an operation ask first and skip the work when nothing
// observes it: [Registry.EnabledPrefix] for a family whose names end in a
// dynamic part ("publisher.publish." + topic), before building the name;
// [Registry.Enabled] for a name that is already at hand.
//
// # Correlation
//
// [WithCorrelationID] and [WithCausationID] put the conversation-wide
// correlation ID and the ID of the message that caused the current work into a
// context; [Snapshot] and [Restore] hand both to a new goroutine.
package hooks
