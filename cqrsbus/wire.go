package cqrsbus

import (
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
)

// WireConfig names the Watermill configurations of a service's CQRS layer,
// for [Wire]. Leave a configuration nil when the service does not use that
// part. Every configuration given is instrumented in place, so build the
// processors and the request/reply backend from them after Wire returns.
type WireConfig struct {
	// Instrumentation configures the instrumentation shared by every part;
	// its Registry and Logger also serve the bus wrappers. A zero value uses
	// the OpenTelemetry globals and the registry of each call's context.
	Instrumentation Config

	// Publisher publishes the commands and events of the buses. Wrap it
	// with watermillobs.NewPublisher, for send spans. It is required when
	// CommandBus or EventBus is set.
	Publisher message.Publisher

	// CommandBus is the command bus configuration. If set, Wire builds the
	// bus ([Wiring.CommandBus]).
	CommandBus *cqrs.CommandBusConfig
	// EventBus is the event bus configuration. If set, Wire builds the bus
	// ([Wiring.EventBus]).
	EventBus *cqrs.EventBusConfig
	// CommandProcessor, EventProcessor and EventGroupProcessor are
	// processor configurations; Wire chains the handling side into them.
	CommandProcessor    *cqrs.CommandProcessorConfig
	EventProcessor      *cqrs.EventProcessorConfig
	EventGroupProcessor *cqrs.EventGroupProcessorConfig
	// RequestReply is the configuration of a requestreply.PubSubBackend;
	// Wire chains the reply stamping into it.
	RequestReply *requestreply.PubSubBackendConfig
}

// Validate reports every problem of the configuration.
func (c WireConfig) Validate() error {
	var err error
	if c.CommandBus == nil && c.EventBus == nil && c.CommandProcessor == nil &&
		c.EventProcessor == nil && c.EventGroupProcessor == nil && c.RequestReply == nil {
		err = errors.Join(err, errors.New("no configuration to wire"))
	}
	if c.Publisher == nil && (c.CommandBus != nil || c.EventBus != nil) {
		err = errors.Join(err, errors.New("missing Publisher for the buses"))
	}
	if c.Publisher != nil && c.CommandBus == nil && c.EventBus == nil {
		err = errors.Join(err, errors.New("no CommandBus or EventBus uses the Publisher"))
	}
	return err
}

// Wiring is what [Wire] built.
type Wiring struct {
	instrumentation *Instrumentation
	commands        *CommandBus
	events          *EventBus
}

// Wire wires the CQRS layer of a service in one call: it builds one
// [Instrumentation] from config.Instrumentation, chains it into every
// configuration given (as the Instrument*Config methods do), and builds
// the command and event buses from their configurations, wrapped as
// [CommandBus] and [EventBus] with the configurations' marshalers and the
// one registry. Together with watermillobs.Instrument on the router and
// watermillobs.NewPublisher on the buses' publisher, that is the whole
// wiring:
//
//	_ = watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{metrics}})
//	pub := watermillobs.NewPublisher(redisPublisher)
//	cqrsLayer, err := cqrsbus.Wire(cqrsbus.WireConfig{Publisher: pub, CommandBus: &cbc, EventBus: &ebc, CommandProcessor: &cpc, EventProcessor: &epc})
//	commands, events := cqrsLayer.CommandBus(), cqrsLayer.EventBus()
//
// It fails, wrapping the reason as "invalid config", for a configuration
// that is incomplete or was already instrumented ([ErrAlreadyInstrumented]),
// and when Watermill rejects a bus configuration; configurations
// instrumented before the failure stay instrumented.
func Wire(config WireConfig) (*Wiring, error) {
	if err := config.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	inst := New(config.Instrumentation)
	var err error
	join := func(field string, e error) {
		if e != nil {
			err = errors.Join(err, fmt.Errorf("%s: %w", field, e))
		}
	}
	if config.CommandBus != nil {
		join("CommandBus", inst.InstrumentCommandBusConfig(config.CommandBus))
	}
	if config.EventBus != nil {
		join("EventBus", inst.InstrumentEventBusConfig(config.EventBus))
	}
	if config.CommandProcessor != nil {
		join("CommandProcessor", inst.InstrumentCommandProcessorConfig(config.CommandProcessor))
	}
	if config.EventProcessor != nil {
		join("EventProcessor", inst.InstrumentEventProcessorConfig(config.EventProcessor))
	}
	if config.EventGroupProcessor != nil {
		join("EventGroupProcessor", inst.InstrumentEventGroupProcessorConfig(config.EventGroupProcessor))
	}
	if config.RequestReply != nil {
		join("RequestReply", inst.InstrumentPubSubBackendConfig(config.RequestReply))
	}
	if err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}

	w := &Wiring{instrumentation: inst}
	reg, logger := config.Instrumentation.Registry, config.Instrumentation.Logger
	if c := config.CommandBus; c != nil {
		inner, err := cqrs.NewCommandBusWithConfig(config.Publisher, *c)
		if err != nil {
			return nil, fmt.Errorf("invalid config: CommandBus: %w", err)
		}
		w.commands = &CommandBus{bus: inner, marshaler: c.Marshaler, registry: reg, logger: logger}
	}
	if c := config.EventBus; c != nil {
		inner, err := cqrs.NewEventBusWithConfig(config.Publisher, *c)
		if err != nil {
			return nil, fmt.Errorf("invalid config: EventBus: %w", err)
		}
		w.events = &EventBus{bus: inner, marshaler: c.Marshaler, registry: reg, logger: logger}
	}
	return w, nil
}

// CommandBus returns the command bus, or nil when WireConfig.CommandBus
// was not set. Its Queries view sends queries.
func (w *Wiring) CommandBus() *CommandBus { return w.commands }

// EventBus returns the event bus, or nil when WireConfig.EventBus was not
// set.
func (w *Wiring) EventBus() *EventBus { return w.events }

// Instrumentation returns the instrumentation chained into the
// configurations, for further configurations of the same service.
func (w *Wiring) Instrumentation() *Instrumentation { return w.instrumentation }
