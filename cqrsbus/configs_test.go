package cqrsbus_test

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
)

func TestInstrumentConfig_misuse(t *testing.T) {
	obs := cqrsbus.New(cqrsbus.Config{})
	var cbc cqrs.CommandBusConfig
	if err := obs.InstrumentCommandBusConfig(&cbc); err != nil {
		t.Fatalf("first instrumentation: %v", err)
	}
	err := obs.InstrumentCommandBusConfig(&cbc)
	if !errors.Is(err, cqrsbus.ErrAlreadyInstrumented) {
		t.Fatalf("second instrumentation: got %v, want ErrAlreadyInstrumented", err)
	}
	// Another Instrumentation does not get around it either.
	if err := cqrsbus.New(cqrsbus.Config{}).InstrumentCommandBusConfig(&cbc); !errors.Is(err, cqrsbus.ErrAlreadyInstrumented) {
		t.Fatalf("second Instrumentation: got %v", err)
	}
	for name, call := range map[string]func() error{
		"command bus":           func() error { return obs.InstrumentCommandBusConfig(nil) },
		"event bus":             func() error { return obs.InstrumentEventBusConfig(nil) },
		"command processor":     func() error { return obs.InstrumentCommandProcessorConfig(nil) },
		"event processor":       func() error { return obs.InstrumentEventProcessorConfig(nil) },
		"event group processor": func() error { return obs.InstrumentEventGroupProcessorConfig(nil) },
		"pubsub backend":        func() error { return obs.InstrumentPubSubBackendConfig((*requestreply.PubSubBackendConfig)(nil)) },
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); err == nil {
				t.Fatal("nil config: got no error")
			}
		})
	}
}
