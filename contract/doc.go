// Package contract holds the message metadata contract of
// watermill-observability: the keys every instrumented path writes
// (correlation_id, causation_id, traceparent, tracestate, baggage, name,
// message_kind, published_at), the kinds and outcomes, the stamping and
// reading of them ([Propagation], [SetIfAbsent], [WithMessageCorrelation]),
// the naming of per-request destinations ([Destination]) and the running of
// hook operations that a broken hook cannot change ([RunHooks]).
//
// watermillobs, cqrsbus and the runtime packages use it, so a message
// carries the same contract whichever of them sent it; use it too where
// messages leave or arrive through a path of your own (a custom consumer
// loop, a relay). It depends only on the standard library, hooks,
// Watermill's message package and the OpenTelemetry API.
//
// # Rules
//
// Values already set are never overwritten, except the trace context of a
// message published while it is itself being handled (a forward, a
// requeue, a poison queue), which is a new hop. Metadata is untrusted
// input: malformed or oversized values are ignored or bounded, never fail a
// message.
package contract
