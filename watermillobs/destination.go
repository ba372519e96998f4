package watermillobs

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// appendDestination appends the attributes of the destination of a
// message sent to or received from topic, named dest (see
// [contract.Destination]): for a per-request one, the raw topic too.
func appendDestination(attrs []attribute.KeyValue, topic, dest string, temporary bool) []attribute.KeyValue {
	attrs = append(attrs, destinationAttrs(dest, temporary)...)
	if temporary {
		attrs = append(attrs, semconv.MessagingDestinationName(bound.String(topic, bound.Attribute)))
	}
	return attrs
}

// destinationAttrs returns the span attributes that describe a destination
// named name (see [contract.Destination]): the topic for a regular one; the
// template and messaging.destination.temporary for a per-request one,
// whose raw topic the caller adds per message.
func destinationAttrs(name string, temporary bool) []attribute.KeyValue {
	if !temporary {
		return []attribute.KeyValue{semconv.MessagingDestinationName(bound.String(name, bound.Attribute))}
	}
	return []attribute.KeyValue{
		semconv.MessagingDestinationTemplate(name),
		semconv.MessagingDestinationTemporary(true),
	}
}
