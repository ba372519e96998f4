package watermillobs

import (
	"context"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
)

// attemptsKey is the context key of the *attemptCounter of a delivery.
type attemptsKey struct{}

// attemptCounter counts the handler attempts of one delivery. Only the
// [CountAttempts] wrapper that created it counts, so wrapping twice, or
// nesting a counted retry in another, does not count an attempt twice.
type attemptCounter struct {
	owner  *countingID
	n      atomic.Int64
	active atomic.Bool
}

// countingID identifies one [CountAttempts] wrapper; it has a size so that
// two of them never share an address.
type countingID struct{ _ byte }

// CountAttempts wraps a retry middleware, such as
// middleware.Retry{...}.Middleware, so that the number of times it calls
// the handler for a delivery is kept in the message's context, where
// [Attempts] reads it. Middlewares outside the retry, such as sentryobs,
// then see one final outcome per delivery and know how many attempts it
// took. The handler's error or panic and the retry's own behaviour and
// hooks are unchanged.
//
// [Instrument] applies it to InstrumentConfig.Retry; use it
// directly when assembling the middleware chain by hand. A nil retry counts
// the single attempt of a chain without retries.
func CountAttempts(retry message.HandlerMiddleware) message.HandlerMiddleware {
	id := new(countingID)
	return func(h message.HandlerFunc) message.HandlerFunc {
		inner := countAttempt(id, h)
		if retry != nil {
			inner = retry(inner)
		}
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			c, ok := ctx.Value(attemptsKey{}).(*attemptCounter)
			// Reuse the counter of a CountAttempts this one runs inside;
			// a finished one is a leftover of an earlier delivery of the
			// same message, which starts the count again.
			if !ok || !c.active.Load() {
				c = &attemptCounter{owner: id}
				c.active.Store(true)
				defer c.active.Store(false)
				msg.SetContext(context.WithValue(ctx, attemptsKey{}, c))
			}
			return inner(msg)
		}
	}
}

// countAttempt counts each call of h when the delivery's counter belongs
// to the CountAttempts identified by id.
func countAttempt(id *countingID, h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if c, ok := msg.Context().Value(attemptsKey{}).(*attemptCounter); ok && c.owner == id {
			c.n.Add(1)
		}
		return h(msg)
	}
}

// Attempts returns how many times the retry wrapped by [CountAttempts] (or
// given to [Instrument] as InstrumentConfig.Retry) has called the handler for the
// message whose context is ctx: 1 during and after the first attempt, 2
// after the first retry, and so on. It returns 0 when attempts are not
// counted. The count is per delivery: a message that the broker redelivers
// starts again at 1. When counted retries are nested, the outermost one
// counts.
func Attempts(ctx context.Context) int {
	if ctx == nil {
		return 0
	}
	if c, ok := ctx.Value(attemptsKey{}).(*attemptCounter); ok {
		return int(c.n.Load())
	}
	return 0
}
