package sentryobs

import (
	"log/slog"
	"strconv"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/getsentry/sentry-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// Tags set on the scope of every handled message. Values come from message
// metadata and the router, so they are cut to [TagValueLimit] bytes of valid
// UTF-8; tags whose value is unknown are left unset.
const (
	// TagMessageType is the message type (contract.MessageType).
	TagMessageType = "cqrs.message_type"
	// TagCorrelationID is the message's correlation ID.
	TagCorrelationID = "correlation_id"
	// TagHandler is the name of the router handler.
	TagHandler = "handler"
	// TagTopic is the topic the router consumed the message from.
	TagTopic = "topic"
	// TagMessageKind is the kind of message: command, event, query, reply
	// or message.
	TagMessageKind = "message_kind"
	// TagTraceID is the hex OpenTelemetry trace ID of the span that is
	// active for the message, so an event can be searched by trace ID.
	TagTraceID = "trace_id"
	// TagAttempts is the number of handler attempts the retry of
	// watermillobs.InstrumentConfig.Retry (or watermillobs.CountAttempts) made before
	// the reported failure; unset when attempts are not counted.
	TagAttempts = "attempts"
)

// ContextMessage is the name of the event context that carries the
// message's UUID and causation ID: per-message values that would make poor
// tags.
const ContextMessage = "message"

// TagValueLimit is the longest tag value, in bytes, that Sentry accepts.
const TagValueLimit = 200

// A Capture reports the errors and panics of Watermill router handlers to
// Sentry. Create it with [New]; it is safe for concurrent use by any number
// of handlers.
type Capture struct {
	hub    *sentry.Hub
	logger *slog.Logger
	ignore func(error) bool
	// dedup is nil when redeliveries are not deduplicated.
	dedup *dedup
}

var _ watermillobs.Backend = (*Capture)(nil)

// New returns a Capture configured by opts. The hub's client is looked up
// for every message, so New may be called before sentry.Init.
func New(opts ...Option) *Capture {
	c := newConfig(opts)
	return &Capture{
		hub:    c.Hub,
		logger: c.Logger,
		ignore: c.Ignore,
		dedup:  newDedup(c.DedupWindow, c.DedupSize),
	}
}

// Middleware is a shorthand for New(opts...).HandlerMiddleware(), for
// router.AddMiddleware.
func Middleware(opts ...Option) message.HandlerMiddleware {
	return New(opts...).HandlerMiddleware()
}

// HandlerMiddleware returns the router middleware that, for every message,
// clones the hub into the message's context (sentry.GetHubFromContext), tags
// its scope with the message's type, kind, correlation ID, handler, topic and
// trace ID, and captures the handler's error or panic, once per message and
// handler within the window of [WithDedupWindow]. Errors are returned
// unchanged and panics are re-raised with the same value, so the router and
// outer middlewares behave exactly as without it. When the hub has no client
// (sentry.Init was not called), messages pass straight through.
//
// It implements [watermillobs.Backend]. Install it inside the tracing
// middleware so that events link to the message's span.
func (c *Capture) HandlerMiddleware() message.HandlerMiddleware {
	return c.middleware
}

func (c *Capture) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		hub := c.bind(msg)
		if hub == nil {
			return h(msg)
		}
		return c.handle(hub, h, msg)
	}
}

// handle runs h and captures what goes wrong. It is a function of its own so
// that the deferred recover covers exactly the handler call.
func (c *Capture) handle(hub *sentry.Hub, h message.HandlerFunc, msg *message.Message) (msgs []*message.Message, err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover()
		if v == nil {
			// runtime.Goexit: nothing to report, and not re-panicking
			// lets the goroutine keep exiting.
			return
		}
		c.capturePanic(hub, msg, v)
		// Re-raise the handler's own value. The deferred call runs on top
		// of the panicking frames, so stack traces taken by outer recovers
		// still show where the handler panicked.
		panic(v)
	}()
	msgs, err = h(msg)
	returned = true
	if err != nil {
		c.captureError(hub, msg, err)
	}
	return msgs, err
}

// bind clones the hub for msg, configures the clone's scope and puts it into
// msg's context. It returns nil when Sentry is not configured or when
// preparing the scope failed; the message is then handled without capture.
func (c *Capture) bind(msg *message.Message) (hub *sentry.Hub) {
	if c.hub == nil || !c.hub.Client().IsEnabled() {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			c.report(msg, "cannot prepare sentry scope", v)
			hub = nil
		}
	}()
	ctx := msg.Context()
	hub = c.hub.Clone()
	hub.ConfigureScope(func(scope *sentry.Scope) {
		scope.SetTag(TagMessageType, bound.String(contract.MessageType(msg), TagValueLimit))
		scope.SetTag(TagMessageKind, contract.MessageKind(msg))
		setTag(scope, TagCorrelationID, contract.CorrelationID(msg))
		setTag(scope, TagHandler, message.HandlerNameFromCtx(ctx))
		setTag(scope, TagTopic, message.SubscribeTopicFromCtx(ctx))

		info := sentry.Context{"uuid": bound.String(msg.UUID, bound.Attribute)}
		if id := contract.CausationID(msg); id != "" {
			info["causation_id"] = id
		}
		scope.SetContext(ContextMessage, info)

		// The propagation context, not a "trace" event context: the scope
		// overwrites the latter with the former when it has no Sentry
		// span, and the former also feeds the dynamic sampling context
		// and hub.GetTraceparent.
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			scope.SetPropagationContext(sentry.PropagationContext{
				TraceID: sentry.TraceID(sc.TraceID()),
				SpanID:  sentry.SpanID(sc.SpanID()),
			})
			scope.SetTag(TagTraceID, sc.TraceID().String())
		}
	})
	msg.SetContext(sentry.SetHubOnContext(ctx, hub))
	return hub
}

// setTag sets a tag when its value is known; Sentry drops empty tags anyway.
func setTag(scope *sentry.Scope, key, value string) {
	if value != "" {
		scope.SetTag(key, bound.String(value, TagValueLimit))
	}
}

func (c *Capture) captureError(hub *sentry.Hub, msg *message.Message, err error) {
	defer c.recoverCapture(msg)
	if c.ignore != nil && c.ignore(err) {
		return
	}
	if c.duplicate(msg) {
		return
	}
	setAttempts(hub, msg)
	// Like hub.CaptureException, plus the message's context in the hint,
	// for BeforeSend callbacks and Sentry's OpenTelemetry integration.
	event := hub.Client().EventFromException(err, sentry.LevelError)
	hub.CaptureEventWithHint(event, &sentry.EventHint{
		Context:           msg.Context(),
		OriginalException: err,
	})
}

func (c *Capture) capturePanic(hub *sentry.Hub, msg *message.Message, v any) {
	defer c.recoverCapture(msg)
	if c.duplicate(msg) {
		return
	}
	setAttempts(hub, msg)
	hub.RecoverWithContext(msg.Context(), v)
}

// duplicate reports whether a failure of msg in this handler was already
// reported within the dedup window. The key includes the handler name, so
// that a message fanned out to several handlers is reported by each; a
// message without UUID cannot be told apart from others and is always
// reported.
func (c *Capture) duplicate(msg *message.Message) bool {
	if c.dedup == nil || msg.UUID == "" {
		return false
	}
	key := bound.String(message.HandlerNameFromCtx(msg.Context()), bound.Attribute) +
		"\x00" + bound.String(msg.UUID, bound.Attribute)
	return c.dedup.suppress(key)
}

// setAttempts tags the scope with the number of attempts, read after the
// handler returned or panicked, when a retry counted them.
func setAttempts(hub *sentry.Hub, msg *message.Message) {
	if n := watermillobs.Attempts(msg.Context()); n > 0 {
		hub.Scope().SetTag(TagAttempts, strconv.Itoa(n))
	}
}

// recoverCapture keeps a panicking transport, BeforeSend or error filter from
// failing the message. It must be deferred directly.
func (c *Capture) recoverCapture(msg *message.Message) {
	if v := recover(); v != nil {
		c.report(msg, "cannot capture to sentry", v)
	}
}

// report logs a failure of Sentry or of our own code. It swallows a panic of
// the logger itself: there is nowhere left to report it.
func (c *Capture) report(msg *message.Message, text string, v any) {
	ctx := msg.Context()
	panics.Report(ctx, c.logger, "sentryobs: "+text, v,
		slog.String("message_uuid", bound.String(msg.UUID, bound.Attribute)),
		slog.String("handler", bound.String(message.HandlerNameFromCtx(ctx), bound.Attribute)),
	)
}
