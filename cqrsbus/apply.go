package cqrsbus

import (
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
)

// InstrumentCommandBusConfig chains [Instrumentation.OnSend] into c.OnSend,
// keeping the function c already has. Call it once per configuration,
// before creating the bus.
func (i *Instrumentation) InstrumentCommandBusConfig(c *cqrs.CommandBusConfig) {
	if c != nil {
		c.OnSend = i.OnSend(c.OnSend)
	}
}

// InstrumentEventBusConfig chains [Instrumentation.OnPublish] into
// c.OnPublish, keeping the function c already has. Call it once per
// configuration, before creating the bus.
func (i *Instrumentation) InstrumentEventBusConfig(c *cqrs.EventBusConfig) {
	if c != nil {
		c.OnPublish = i.OnPublish(c.OnPublish)
	}
}

// InstrumentCommandProcessorConfig chains [Instrumentation.OnCommandHandle]
// into c.OnHandle, keeping the function c already has. Call it once per
// configuration, before creating the processor.
func (i *Instrumentation) InstrumentCommandProcessorConfig(c *cqrs.CommandProcessorConfig) {
	if c != nil {
		c.OnHandle = i.OnCommandHandle(c.OnHandle)
	}
}

// InstrumentEventProcessorConfig chains [Instrumentation.OnEventHandle]
// into c.OnHandle, keeping the function c already has. Call it once per
// configuration, before creating the processor.
func (i *Instrumentation) InstrumentEventProcessorConfig(c *cqrs.EventProcessorConfig) {
	if c != nil {
		c.OnHandle = i.OnEventHandle(c.OnHandle)
	}
}

// InstrumentEventGroupProcessorConfig chains
// [Instrumentation.OnEventGroupHandle] into c.OnHandle, keeping the
// function c already has. Call it once per configuration, before creating
// the processor.
func (i *Instrumentation) InstrumentEventGroupProcessorConfig(c *cqrs.EventGroupProcessorConfig) {
	if c != nil {
		c.OnHandle = i.OnEventGroupHandle(c.OnHandle)
	}
}

// InstrumentPubSubBackendConfig chains [Instrumentation.OnReply] into
// c.ModifyNotificationMessage, keeping the function c already has. Call it
// once per configuration, before creating the backend. Wrap c.Publisher
// with watermillobs.NewPublisher too, for the reply's send span.
func (i *Instrumentation) InstrumentPubSubBackendConfig(c *requestreply.PubSubBackendConfig) {
	if c != nil {
		c.ModifyNotificationMessage = i.OnReply(c.ModifyNotificationMessage)
	}
}
