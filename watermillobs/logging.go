package watermillobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// Logging returns a router middleware that writes one log record per
// handled message, "message handled", through the logger of [WithLogger]
// and with the message's context, so that a handler wrapped by
// [NewLogHandler] adds the context's fields too. Other options are ignored.
//
// The record has the fields kind, message_type, outcome ("success" or
// "error"), duration_ms (a float64 number of milliseconds), message_uuid and
// correlation_id, plus causation_id, trace_id, span_id, handler and topic
// when they are known. Every value taken from the message is bounded in size
// and valid UTF-8.
//
// A message is logged at [slog.LevelInfo] on success and at
// [slog.LevelError] with an "error" field on failure, except that an error
// matching [context.Canceled] is logged at [slog.LevelDebug]: it comes from
// a shutdown or an abandoned call rather than from a fault, and the message
// will be redelivered and logged again. A handler panic is logged at
// [slog.LevelError] with a "panic" field and then re-raised with the same
// value. To drop the success records, give a logger whose handler's level is
// above Info: when the level is disabled, no fields are built.
func Logging(opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	logger := c.logger().Handler()
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			start := time.Now()
			returned := false
			defer func() {
				if returned {
					return
				}
				// A nil value means runtime.Goexit, which is not ours to
				// report or stop.
				if r := recover(); r != nil {
					logHandled(logger, msg, time.Since(start), nil, r)
					panic(r)
				}
			}()
			out, err := h(msg)
			returned = true
			logHandled(logger, msg, time.Since(start), err, nil)
			return out, err
		}
	}
}

// logHandled writes the record of a handled message to logger. panicValue
// is the recovered value of a handler panic, or nil.
//
// The record goes to the handler itself, without a source position: one
// from here would name this file for every message, and slog.Logger would
// walk the stack (runtime.Callers) to find it.
func logHandled(logger slog.Handler, msg *message.Message, d time.Duration, err error, panicValue any) {
	defer func() {
		// Only the logger's own handler can panic here. Reporting through
		// it again would fail the same way, so the record is dropped: the
		// message must not fail because its log line did. It is counted.
		if recover() != nil {
			panics.Recovered()
		}
	}()
	if msg == nil {
		return
	}
	ctx := msg.Context()
	level, outcome := slog.LevelInfo, contract.OutcomeSuccess
	switch {
	case panicValue != nil:
		level, outcome = slog.LevelError, contract.OutcomeError
	case err == nil:
	case errors.Is(err, context.Canceled):
		level, outcome = slog.LevelDebug, contract.OutcomeError
	default:
		level, outcome = slog.LevelError, contract.OutcomeError
	}
	if !logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 13)
	attrs = append(attrs,
		slog.String("kind", contract.MessageKind(msg)),
		slog.String("message_type", contract.MessageType(msg)),
		slog.String("outcome", outcome),
		slog.Float64("duration_ms", float64(d)/float64(time.Millisecond)),
		slog.String("message_uuid", bound.String(msg.UUID, bound.Attribute)),
		slog.String("correlation_id", bound.String(contract.CorrelationID(msg), bound.Attribute)),
	)
	if id := contract.CausationID(msg); id != "" {
		attrs = append(attrs, slog.String("causation_id", id))
	}
	if id := TraceID(ctx); id != "" {
		attrs = append(attrs, slog.String("trace_id", id), slog.String("span_id", SpanID(ctx)))
	}
	if name := message.HandlerNameFromCtx(ctx); name != "" {
		attrs = append(attrs, slog.String("handler", bound.String(name, bound.Attribute)))
	}
	if topic := message.SubscribeTopicFromCtx(ctx); topic != "" {
		attrs = append(attrs, slog.String("topic", bound.String(topic, bound.Attribute)))
	}
	if err != nil {
		// fmt recovers from a panicking Error method (a nil pointer
		// receiver, say); err.Error() would not.
		attrs = append(attrs, slog.String("error", bound.String(fmt.Sprint(err), bound.Error)))
	}
	if panicValue != nil {
		attrs = append(attrs, slog.String("panic", boundedPanicValue(panicValue)))
	}
	r := slog.NewRecord(time.Now(), level, "message handled", 0)
	r.AddAttrs(attrs...)
	// Like slog.Logger, the handler's error is not the message's.
	_ = logger.Handle(ctx, r)
}

// boundedPanicValue formats a recovered panic value for a log field or span
// attribute. fmt recovers from panicking String and Error methods.
func boundedPanicValue(v any) string {
	return bound.String(fmt.Sprint(v), bound.Error)
}
