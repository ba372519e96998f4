package promobs

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// PublisherDecorator returns a decorator for
// message.Router.AddPublisherDecorators that applies
// [Metrics.DecoratePublisher]. It fails only for a nil publisher.
func (m *Metrics) PublisherDecorator() message.PublisherDecorator {
	return func(pub message.Publisher) (message.Publisher, error) {
		if pub == nil {
			return nil, errors.New("cannot decorate nil publisher")
		}
		return m.DecoratePublisher(pub), nil
	}
}

// DecoratePublisher returns a publisher that publishes through pub and
// records watermill_messages_published_total (per message, outcome "error"
// when Publish fails or panics) and watermill_publish_duration_seconds (per
// Publish call). Observations carry the trace ID of the first message with
// a sampled span in its context as an exemplar.
//
// Decorating a publisher that is already decorated by the same [Metrics]
// (or Metrics sharing a registry) returns it unchanged, so messages are not
// counted twice. A nil pub gives nil.
func (m *Metrics) DecoratePublisher(pub message.Publisher) message.Publisher {
	if pub == nil {
		return nil
	}
	if p, ok := pub.(*publisher); ok && p.m.c == m.c {
		return p
	}
	return &publisher{pub: pub, m: m}
}

type publisher struct {
	pub message.Publisher
	m   *Metrics
}

// Publish publishes through the decorated publisher and observes the call.
func (p *publisher) Publish(topic string, msgs ...*message.Message) (err error) {
	if len(msgs) == 0 {
		return p.pub.Publish(topic, msgs...)
	}
	start := p.m.now()
	panicked := true
	defer func() {
		p.m.observePublish(topic, msgs, start, panicked || err != nil)
	}()
	err = p.pub.Publish(topic, msgs...)
	panicked = false
	return err
}

// Unwrap returns the decorated publisher, so that decorators outside this
// one (watermillobs.NewPublisher) can tell the transport beneath.
func (p *publisher) Unwrap() message.Publisher { return p.pub }

// Close closes the decorated publisher.
func (p *publisher) Close() error {
	return p.pub.Close()
}

func (m *Metrics) observePublish(topic string, msgs []*message.Message, start time.Time, failed bool) {
	now := m.now()
	var ex exemplar
	var first *message.Message
	ctx := context.Background()
	for _, msg := range msgs {
		if msg == nil {
			continue
		}
		if first == nil {
			first = msg
		}
		if ex = exemplarOf(msg.Context(), now); ex.carried() {
			ctx = msg.Context()
			break
		}
	}
	defer m.recoverPanic(ctx)
	if m.observeHook != nil {
		m.observeHook()
	}
	s := m.c.publishedSeries(m.topicLabel(topic, first), outcome(failed))
	s.duration.observe(now.Sub(start).Seconds(), &ex)
	s.total.add(float64(len(msgs)), &ex)
}
