package contract

import (
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// Metadata keys of the message contract. Every message published through an
// instrumented path carries them; values set by the user are never
// overwritten.
const (
	// CorrelationIDKey holds the conversation-wide correlation ID. It is the
	// key Watermill's own CorrelationID middleware uses.
	CorrelationIDKey = "correlation_id"
	// CausationIDKey holds the UUID of the message whose handling caused
	// this one.
	CausationIDKey = "causation_id"
	// TraceparentKey, TracestateKey and BaggageKey hold the W3C trace
	// context, written and read through the configured propagator.
	TraceparentKey = "traceparent"
	TracestateKey  = "tracestate"
	BaggageKey     = "baggage"
	// NameKey holds the message type; Watermill's cqrs marshalers set it.
	NameKey = "name"
	// MessageKindKey holds the kind of message: [KindCommand], [KindEvent],
	// [KindQuery] or [KindReply].
	MessageKindKey = "message_kind"
	// PublishedAtKey holds the publish time in RFC 3339 with nanoseconds,
	// for time in queue and end-to-end latency.
	PublishedAtKey = "published_at"
)

// Message kinds, the values of [MessageKindKey] and of the "kind" label and
// log field.
const (
	KindCommand = "command"
	KindEvent   = "event"
	KindQuery   = "query"
	KindReply   = "reply"
	// KindMessage is used when a message carries no (or an unknown) kind.
	KindMessage = "message"
)

// Values of the "outcome" span attribute, log field and metric label.
const (
	OutcomeSuccess = "success"
	OutcomeError   = "error"
)

// MessageKind returns the kind recorded in the message's metadata, or
// [KindMessage] when it is missing or not one of the known kinds.
func MessageKind(msg *message.Message) string {
	switch k := msg.Metadata.Get(MessageKindKey); k {
	case KindCommand, KindEvent, KindQuery, KindReply:
		return k
	}
	return KindMessage
}

// MessageType returns the message's type: the [NameKey] metadata set by
// Watermill's cqrs marshalers, else the name of the router handler that
// consumed it, else "unknown". The result is bounded in size and valid UTF-8,
// but not in cardinality: metric backends cap it themselves.
func MessageType(msg *message.Message) string {
	if t := msg.Metadata.Get(NameKey); t != "" {
		return bound.String(t, bound.Attribute)
	}
	if h := message.HandlerNameFromCtx(msg.Context()); h != "" {
		return bound.String(h, bound.Attribute)
	}
	return "unknown"
}

// SetIfAbsent sets a metadata value unless the message already has one
// for key, the rule of the metadata contract: values set by the user win.
// An empty value is not set; a nil metadata map is created.
func SetIfAbsent(msg *message.Message, key, value string) {
	if value == "" {
		return
	}
	if msg.Metadata == nil {
		msg.Metadata = make(message.Metadata)
	}
	if _, ok := msg.Metadata[key]; !ok {
		msg.Metadata[key] = value
	}
}

// CorrelationID returns the correlation ID of a message: the one in its
// context (set by the [Correlation] middleware or the caller), else a
// well-formed [CorrelationIDKey] metadata value, else "".
func CorrelationID(msg *message.Message) string {
	if id := hooks.CorrelationID(msg.Context()); id != "" {
		return id
	}
	if id := msg.Metadata.Get(CorrelationIDKey); bound.IsID(id) {
		return id
	}
	return ""
}

// CausationID returns the well-formed [CausationIDKey] metadata value of a
// message, or "".
func CausationID(msg *message.Message) string {
	if id := msg.Metadata.Get(CausationIDKey); bound.IsID(id) {
		return id
	}
	return ""
}

// PublishedAt returns the publish time recorded in the [PublishedAtKey]
// metadata, and false if it is missing or malformed.
func PublishedAt(msg *message.Message) (time.Time, bool) {
	v := msg.Metadata.Get(PublishedAtKey)
	if v == "" || len(v) > 64 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// formatPublishedAt is the [PublishedAtKey] encoding.
func formatPublishedAt(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}
