// Package cqrsbus makes Watermill's CQRS component (components/cqrs and
// components/requestreply) observable: commands, events and queries carry
// the conversation's correlation ID, the causation ID of the message whose
// handling sent them and the trace context; every send and every handler
// call runs a named hook operation; every handler call gets a
// cqrs.{MessageType} span; and metrics, logs and Sentry events are labelled
// with the message kind (command, event, query).
//
// It adds only what the CQRS layer needs on top of watermillobs, which it
// reuses: the processors register ordinary router handlers, so
// watermillobs.Instrument on their router already gives every CQRS handler
// a consumer span, correlation, JSON logs and (with InstrumentConfig.Backends) promobs
// metrics and sentryobs capture, all labelled with the message_kind this
// package stamps. A publisher wrapped with watermillobs.NewPublisher gives
// the buses send spans.
//
// # Pieces
//
//   - [Wire] is the one obvious path: given the Watermill configurations
//     of a service (buses, command, event and event-group processors, the
//     request/reply backend), it chains the instrumentation into each and
//     builds the wrapped buses, with one registry and the configurations'
//     own marshalers.
//   - [Instrumentation] ([New]) chains into the single-function hooks of the
//     Watermill configurations without dropping a function already set:
//     [Instrumentation.OnSend] and [Instrumentation.OnPublish] stamp the
//     metadata contract on every message; [Instrumentation.OnCommandHandle],
//     [Instrumentation.OnEventHandle] and [Instrumentation.OnEventGroupHandle]
//     observe every handler call; [Instrumentation.OnReply] stamps
//     request/reply replies. The Instrument*Config methods apply them to a
//     configuration in one call.
//   - [CommandBus] and [EventBus] wrap *cqrs.CommandBus and *cqrs.EventBus
//     to run the hook operations of sending, and tell queries (commands sent
//     with requestreply) from commands. [CommandBus] implements
//     requestreply.CommandBus; [CommandBus.Queries] is the view to send
//     queries through. [CommandSender] and [EventPublisher] are the small
//     interfaces for code that sends.
//
// # Hook operations
//
//	command.send.{CommandType}               command.type, correlation_id, message_type
//	query.send.{QueryType}                   query.type, correlation_id, message_type
//	event.publish.{EventType}                event.type, correlation_id, message_type
//	command.handle.{CommandType}             command.type, command.id, handler.type, correlation_id, message_type
//	query.handle.{QueryType}                 query.type, query.id, handler.type, correlation_id, message_type
//	event.dispatch.{EventType}               event.type, event.id, correlation_id, message_type
//	event.handler.{EventType}.{HandlerType}  event.type, event.id, handler.type, correlation_id, message_type
//
// HandlerType is the handler's name (HandlerName). When no enabled hook
// observes a family, its operations cost one registry check and nothing is
// built.
//
// # Setup
//
// The complete wiring of a service, with error handling left out:
//
//	router, _ := message.NewRouter(message.RouterConfig{}, logger)
//	metrics, _ := promobs.New(prometheus.DefaultRegisterer)
//	_ = watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{metrics, sentryobs.New()}})
//	pub := watermillobs.NewPublisher(redisPublisher)
//
//	cqrsLayer, _ := cqrsbus.Wire(cqrsbus.WireConfig{
//		Publisher:           pub,
//		CommandBus:          &commandBusConfig,
//		EventBus:            &eventBusConfig,
//		CommandProcessor:    &commandProcessorConfig,
//		EventProcessor:      &eventProcessorConfig,
//		EventGroupProcessor: &eventGroupProcessorConfig, // if you use one
//		RequestReply:        &requestReplyConfig,        // if you use requestreply
//	})
//	commands, events := cqrsLayer.CommandBus(), cqrsLayer.EventBus()
//	// Build the processors and the backend from the same configurations.
//
//	// An HTTP handler starts the conversation:
//	ctx := hooks.WithCorrelationID(r.Context(), requestID)
//	err := commands.Send(ctx, &PlaceOrder{ID: id})
//
//	// A query, answered through requestreply:
//	reply, err := requestreply.SendWithReply[OrderStatus](ctx, commands.Queries(), backend, &GetOrderStatus{ID: id})
//
// Handlers pass on the context they get; what they send continues the
// span, the correlation ID, and has the handled message as its cause.
//
// # Failures
//
// Handler errors and panics are recorded on the cqrs span (cqrs.outcome
// "error", error.type, status Error) and returned or re-raised unchanged.
// Messages that fail before a handler is called (unknown event types with
// AckOnUnknownEvent false, payloads the marshaler rejects) are observed by
// the router's watermillobs middlewares as failed messages, without a cqrs
// span, and then nacked as Watermill does; unknown events with
// AckOnUnknownEvent true are acked and counted as handled.
package cqrsbus
