package promobs

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
)

// HandlerMiddleware returns the router middleware that records, per handled
// message, cqrs_message_duration_seconds, cqrs_message_total,
// watermill_messages_consumed_total and
// watermill_message_time_in_queue_seconds.
//
// The outcome is "error" when the handler returns an error or panics; a
// panic is observed and then continues unchanged. Wrapping a handler twice
// with middlewares of the same [Metrics] (or of Metrics sharing a registry)
// counts each message once. A middleware outside this one that calls the
// handler again, such as Watermill's Retry, counts every attempt;
// time in queue is observed for the first attempt only.
//
// Install it inside the tracing middleware (watermillobs.Instrument does) so
// that observations carry the trace ID of the consumer span as an exemplar.
func (m *Metrics) HandlerMiddleware() message.HandlerMiddleware {
	return m.middleware
}

func (m *Metrics) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (produced []*message.Message, err error) {
		if msg == nil {
			return h(msg)
		}
		mark, first := m.enter(msg)
		if mark == nil {
			return h(msg)
		}
		defer mark.active.Store(false)

		// The context as the handler gets it, with the consumer span of
		// the tracing middleware: the handler may replace it.
		ctx := msg.Context()
		start := m.now()
		panicked := true
		defer func() {
			m.observeHandled(ctx, msg, start, first, panicked || err != nil)
		}()
		produced, err = h(msg)
		panicked = false
		return produced, err
	}
}

// observedKey finds the marker of a collector in a message's context. It is
// pointer-shaped, so using it as a context key does not allocate.
type observedKey struct{ c *collector }

// observedCtx marks a message whose handling a middleware of collector
// key.c is observing, so that an inner middleware of the same collector
// steps aside. It is a context (rather than a value under context.WithValue)
// to cost one allocation per message.
type observedCtx struct {
	context.Context
	key observedKey
	// msg ties the marker to one message: contexts travel to other
	// messages (cqrs buses publish with the handler's context), and those
	// must be observed when handled.
	msg    *message.Message
	active atomic.Bool
}

func (c *observedCtx) Value(key any) any {
	if k, ok := key.(observedKey); ok && k == c.key {
		return c
	}
	return c.Context.Value(key)
}

func (c *observedCtx) String() string {
	return fmt.Sprint(c.Context) + ".WithValue(promobs.observed)"
}

// enter marks msg as being observed by m. It returns nil when an outer
// middleware of the same collector is already observing msg, and whether
// this is the first observed attempt at handling msg.
func (m *Metrics) enter(msg *message.Message) (mark *observedCtx, first bool) {
	ctx := msg.Context()
	key := observedKey{m.c}
	if o, ok := ctx.Value(key).(*observedCtx); ok && o.msg == msg {
		if !o.active.CompareAndSwap(false, true) {
			return nil, false
		}
		return o, false
	}
	o := &observedCtx{Context: ctx, key: key, msg: msg}
	o.active.Store(true)
	msg.SetContext(o)
	return o, true
}

func (m *Metrics) observeHandled(ctx context.Context, msg *message.Message, start time.Time, first, failed bool) {
	defer m.recoverPanic(ctx)
	if m.observeHook != nil {
		m.observeHook()
	}
	now := m.now()
	ex := exemplarOf(ctx, now)
	result := outcome(failed)

	hs := m.c.handledSeries(contract.MessageKind(msg), labelValue(contract.MessageType(msg)), result)
	hs.duration.observe(now.Sub(start).Seconds(), &ex)
	hs.total.add(1, &ex)

	topic := m.topicLabel(message.SubscribeTopicFromCtx(ctx), msg)
	m.c.consumedSeries(topic, labelValue(message.HandlerNameFromCtx(ctx)), result).total.add(1, &ex)
	if !first {
		return
	}
	// Clocks of producer and consumer hosts differ: a publish time in the
	// future says nothing about the queue, so it is skipped.
	if at, ok := contract.PublishedAt(msg); ok {
		if d := start.Sub(at); d >= 0 {
			m.c.queueSeries(topic).observe(d.Seconds(), &ex)
		}
	}
}
