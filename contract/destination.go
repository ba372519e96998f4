package contract

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// TemporaryDestination is the template of a reply topic that no
// [TopicTemplateFunc] maps: request/reply answers on a topic per request,
// and naming spans, operations or metric labels after each would make them
// unbounded.
const TemporaryDestination = "(temporary)"

// A TopicTemplateFunc maps a per-request topic ("shop.reply.3f2a...") to a
// template of low cardinality ("shop.reply.*"), which then names spans, hook
// operations and metric labels in its place. It returns "" (or the topic
// itself) for topics that are not per-request. It must be safe for
// concurrent use and cheap: it runs for every message.
type TopicTemplateFunc func(topic string) string

// Destination returns what names the destination topic of msg in span
// names, hook operation names and metric labels: the template that fn
// gives (fn may be nil), else [TemporaryDestination] for a message of kind
// [KindReply], else topic itself (an empty topic stays empty). temporary reports whether the name is a
// template rather than the topic.
func Destination(fn TopicTemplateFunc, topic string, msg *message.Message) (name string, temporary bool) {
	if topic == "" {
		return "", false
	}
	if fn != nil {
		if t := fn(topic); t != "" && t != topic {
			return bound.String(t, bound.Attribute), true
		}
	}
	if msg != nil && msg.Metadata[MessageKindKey] == KindReply {
		return TemporaryDestination, true
	}
	return topic, false
}
