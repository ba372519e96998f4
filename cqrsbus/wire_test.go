package cqrsbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

func wireBusConfigs() (*cqrs.CommandBusConfig, *cqrs.EventBusConfig) {
	return &cqrs.CommandBusConfig{
			GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return "commands", nil },
			Marshaler:            marshaler,
		}, &cqrs.EventBusConfig{
			GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) { return "events", nil },
			Marshaler:            marshaler,
		}
}

func TestWire_config_errors(t *testing.T) {
	cbc, _ := wireBusConfigs()
	tests := []struct {
		name   string
		config cqrsbus.WireConfig
		want   []string
	}{
		{"nothing", cqrsbus.WireConfig{}, []string{"no configuration to wire"}},
		{"bus without publisher", cqrsbus.WireConfig{CommandBus: cbc}, []string{"missing Publisher"}},
		{"publisher without bus", cqrsbus.WireConfig{Publisher: &capturePublisher{}, RequestReply: &requestreply.PubSubBackendConfig{}},
			[]string{"no CommandBus or EventBus uses the Publisher"}},
		{"bad bus config", cqrsbus.WireConfig{Publisher: &capturePublisher{}, CommandBus: &cqrs.CommandBusConfig{}},
			[]string{"CommandBus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cqrsbus.Wire(tt.config)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "invalid config: ") {
				t.Errorf("error %q does not say invalid config", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestWire_twice_is_an_error(t *testing.T) {
	cbc, _ := wireBusConfigs()
	if _, err := cqrsbus.Wire(cqrsbus.WireConfig{Publisher: &capturePublisher{}, CommandBus: cbc}); err != nil {
		t.Fatal(err)
	}
	_, err := cqrsbus.Wire(cqrsbus.WireConfig{Publisher: &capturePublisher{}, CommandBus: cbc})
	if !errors.Is(err, cqrsbus.ErrAlreadyInstrumented) {
		t.Fatalf("error = %v, want ErrAlreadyInstrumented", err)
	}
}

// The buses Wire builds stamp the contract and run the hook operations
// through the one registry given.
func TestWire_buses(t *testing.T) {
	reg, ops := newOpRecorder(t)
	pub := &capturePublisher{}
	cbc, ebc := wireBusConfigs()
	w, err := cqrsbus.Wire(cqrsbus.WireConfig{
		Instrumentation: cqrsbus.Config{Registry: reg},
		Publisher:       pub,
		CommandBus:      cbc,
		EventBus:        ebc,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := hooks.WithCorrelationID(context.Background(), "req-1")
	if err := w.CommandBus().Send(ctx, &PlaceOrder{OrderID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.EventBus().Publish(ctx, &OrderPlaced{OrderID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := w.CommandBus().Queries().Send(ctx, &GetOrderStatus{}); err != nil {
		t.Fatal(err)
	}
	pub.mu.Lock()
	msgs := pub.msgs
	pub.mu.Unlock()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i, want := range []string{"command", "event", "query"} {
		md := msgs[i].Metadata
		if md.Get(contract.MessageKindKey) != want || md.Get(contract.CorrelationIDKey) != "req-1" {
			t.Errorf("message %d: kind %q correlation %q, want %s and req-1", i, md.Get(contract.MessageKindKey), md.Get(contract.CorrelationIDKey), want)
		}
	}
	got := ops.names()
	want := []string{"command.send.PlaceOrder", "event.publish.OrderPlaced", "query.send.GetOrderStatus"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("operations = %q, want %q", got, want)
	}
	if w.Instrumentation() == nil {
		t.Error("no Instrumentation")
	}
}
