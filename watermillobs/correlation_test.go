package watermillobs_test

import (
	"context"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func TestCorrelation_stamps_produced_messages(t *testing.T) {
	rec, _, opts := newTracing(t)
	mw := func(h message.HandlerFunc) message.HandlerFunc {
		return watermillobs.Correlation(opts...)(watermillobs.Tracing(watermillobs.TracingConfig{}, opts...)(h))
	}
	consumed := message.NewMessage("consumed-uuid", nil)
	consumed.Metadata.Set(contract.CorrelationIDKey, "corr-42")

	userSet := message.NewMessage("p2", nil)
	userSet.Metadata.Set(contract.CorrelationIDKey, "user-corr")
	userSet.Metadata.Set(contract.CausationIDKey, "user-cause")
	userSet.Metadata.Set(contract.TraceparentKey, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")

	var inHandler context.Context
	produced, err := mw(func(m *message.Message) ([]*message.Message, error) {
		inHandler = m.Context()
		bare := message.NewMessage("p1", nil)
		bare.Metadata = nil
		return []*message.Message{bare, userSet, nil}, nil
	})(consumed)
	if err != nil {
		t.Fatal(err)
	}
	if hooks.CorrelationID(inHandler) != "corr-42" || hooks.CausationID(inHandler) != "consumed-uuid" {
		t.Errorf("handler context: correlation %q causation %q", hooks.CorrelationID(inHandler), hooks.CausationID(inHandler))
	}
	process := spanByName(t, rec, "process")

	bare := produced[0]
	if bare.Metadata.Get(contract.CorrelationIDKey) != "corr-42" || bare.Metadata.Get(contract.CausationIDKey) != "consumed-uuid" {
		t.Errorf("produced metadata = %v", bare.Metadata)
	}
	if sc := trace.SpanContextFromContext(bare.Context()); sc.SpanID() != process.SpanContext().SpanID() {
		t.Errorf("produced message context does not continue the process span")
	}
	want := "00-" + process.SpanContext().TraceID().String() + "-" + process.SpanContext().SpanID().String() + "-01"
	if got := bare.Metadata.Get(contract.TraceparentKey); got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	for k, v := range map[string]string{
		contract.CorrelationIDKey: "user-corr",
		contract.CausationIDKey:   "user-cause",
		contract.TraceparentKey:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	} {
		if got := userSet.Metadata.Get(k); got != v {
			t.Errorf("user-set %s overwritten with %q", k, got)
		}
	}
}

func TestCorrelation_starts_a_conversation(t *testing.T) {
	msg := message.NewMessage("u-1", nil)
	msg.Metadata = nil
	var got string
	_, err := watermillobs.Correlation()(func(m *message.Message) ([]*message.Message, error) {
		got = hooks.CorrelationID(m.Context())
		return nil, nil
	})(msg)
	if err != nil || len(got) != 36 {
		t.Errorf("correlation in handler = %q (err %v), want a new UUID", got, err)
	}
}
