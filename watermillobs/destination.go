package watermillobs

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

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
