package cqrsbus

import (
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
)

// The fine-grained path: one method per Watermill configuration, for a
// service that builds its buses itself or has several configurations of
// one kind. [Wire] does all of them in one call.

// InstrumentCommandBusConfig chains [Instrumentation.OnSend] into c.OnSend,
// keeping the function c already has. Call it once per configuration,
// before creating the bus. It returns an error, and changes nothing, when
// c is nil or was already instrumented ([ErrAlreadyInstrumented]).
func (i *Instrumentation) InstrumentCommandBusConfig(c *cqrs.CommandBusConfig) error {
	if err := claimConfig(c, "*cqrs.CommandBusConfig"); err != nil {
		return err
	}
	c.OnSend = i.OnSend(c.OnSend)
	return nil
}

// InstrumentEventBusConfig chains [Instrumentation.OnPublish] into
// c.OnPublish, keeping the function c already has. Call it once per
// configuration, before creating the bus. It returns an error, and changes
// nothing, when c is nil or was already instrumented.
func (i *Instrumentation) InstrumentEventBusConfig(c *cqrs.EventBusConfig) error {
	if err := claimConfig(c, "*cqrs.EventBusConfig"); err != nil {
		return err
	}
	c.OnPublish = i.OnPublish(c.OnPublish)
	return nil
}

// InstrumentCommandProcessorConfig chains [Instrumentation.OnCommandHandle]
// into c.OnHandle, keeping the function c already has. Call it once per
// configuration, before creating the processor. It returns an error, and
// changes nothing, when c is nil or was already instrumented.
func (i *Instrumentation) InstrumentCommandProcessorConfig(c *cqrs.CommandProcessorConfig) error {
	if err := claimConfig(c, "*cqrs.CommandProcessorConfig"); err != nil {
		return err
	}
	c.OnHandle = i.OnCommandHandle(c.OnHandle)
	return nil
}

// InstrumentEventProcessorConfig chains [Instrumentation.OnEventHandle]
// into c.OnHandle, keeping the function c already has. Call it once per
// configuration, before creating the processor. It returns an error, and
// changes nothing, when c is nil or was already instrumented.
func (i *Instrumentation) InstrumentEventProcessorConfig(c *cqrs.EventProcessorConfig) error {
	if err := claimConfig(c, "*cqrs.EventProcessorConfig"); err != nil {
		return err
	}
	c.OnHandle = i.OnEventHandle(c.OnHandle)
	return nil
}

// InstrumentEventGroupProcessorConfig chains
// [Instrumentation.OnEventGroupHandle] into c.OnHandle, keeping the
// function c already has. Call it once per configuration, before creating
// the processor. It returns an error, and changes nothing, when c is nil or
// was already instrumented.
func (i *Instrumentation) InstrumentEventGroupProcessorConfig(c *cqrs.EventGroupProcessorConfig) error {
	if err := claimConfig(c, "*cqrs.EventGroupProcessorConfig"); err != nil {
		return err
	}
	c.OnHandle = i.OnEventGroupHandle(c.OnHandle)
	return nil
}

// InstrumentPubSubBackendConfig chains [Instrumentation.OnReply] into
// c.ModifyNotificationMessage, keeping the function c already has. Call it
// once per configuration, before creating the backend. Wrap c.Publisher
// with watermillobs.NewPublisher too, for the reply's send span. It returns
// an error, and changes nothing, when c is nil or was already instrumented.
func (i *Instrumentation) InstrumentPubSubBackendConfig(c *requestreply.PubSubBackendConfig) error {
	if err := claimConfig(c, "*requestreply.PubSubBackendConfig"); err != nil {
		return err
	}
	c.ModifyNotificationMessage = i.OnReply(c.ModifyNotificationMessage)
	return nil
}

// claimConfig marks c as instrumented, or says why it cannot be.
func claimConfig[T any](c *T, typ string) error {
	if c == nil {
		return fmt.Errorf("cannot instrument nil %s", typ)
	}
	if !claim(c) {
		return fmt.Errorf("cannot instrument %s: %w", typ, ErrAlreadyInstrumented)
	}
	return nil
}

// ErrAlreadyInstrumented is returned when a configuration given to [Wire]
// or to an Instrument*Config method was instrumented before: chaining the
// hooks twice would stamp every message and open every span twice.
var ErrAlreadyInstrumented = errors.New("configuration already instrumented")
