package sagas

import (
	"context"
	"encoding/json"
	"time"
)

// Definition describes one saga type as a state machine: the events that
// start and continue it, how an event names its instance, and the step that
// turns (state, event or fired timeout) into the next state and its effects.
// Register it with [Register].
//
//	sagas.Definition[OrderState]{
//		Type: "OrderSaga",
//		Events: []sagas.EventBinding{
//			sagas.StartOn(func(e *OrderPlaced) string { return e.OrderID }),
//			sagas.On(func(e *StockReserved) string { return e.OrderID }),
//		},
//		Step: orderStep,
//	}
type Definition[S any] struct {
	// Type names the saga type ("OrderSaga"). It names the hook operation
	// saga.run.{Type}, the handlers group (and so the consumer group) and
	// the store keys. It is required.
	Type string

	// Events lists the event types the saga handles, built with [StartOn]
	// and [On]; at least one must start an instance. It is required.
	Events []EventBinding

	// Step computes a step. It gets the current state (the zero S for a new
	// instance) and what happened, and returns the new state and effects.
	// It must be deterministic in its effects and must not send anything
	// itself: the manager saves what it returns with the state and sends
	// it afterwards, so a crash never loses nor duplicates an effect. An
	// error or a panic counts as a poison attempt (see the package
	// documentation). It is required.
	Step func(ctx context.Context, state S, in Input) (Result[S], error)

	// Codec encodes the state for the store. If not set, [JSONCodec] is
	// used.
	Codec Codec[S]
}

// Result is what a step returns.
type Result[S any] struct {
	// State is the new state, saved with the step.
	State S
	// Status names the state the saga is in now ("awaiting_payment"),
	// recorded as the step's to_state. If empty, the status is unchanged.
	Status string
	// Commands are the command values to send (the structs the
	// configured marshaler marshals), in order.
	Commands []any
	// Schedule lists timeouts to schedule. Scheduling a name that is
	// already scheduled replaces it.
	Schedule []ScheduleTimeout
	// Cancel names scheduled timeouts to cancel. Unknown names are
	// ignored.
	Cancel []string
	// End ends the saga when set: one of [OutcomeCompleted],
	// [OutcomeCompensated], [OutcomeFailed] or [OutcomeTimedOut]. An ended
	// saga keeps its history, sends the commands of its last step, drops
	// its remaining timeouts and ignores later events.
	End string
}

// ScheduleTimeout asks for a timeout named Name to fire After from now.
type ScheduleTimeout struct {
	Name  string
	After time.Duration
}

// Input is what a step reacts to: an event or a fired timeout.
type Input struct {
	// Event is the event (a *E for a binding built with StartOn[E] or
	// On[E]); nil for a timeout.
	Event any
	// EventType is the event's type name as the marshaler names it; the
	// timeout's name for a timeout.
	EventType string
	// EventID is the event message's UUID; the timeout's ID for a timeout.
	EventID string
	// Timeout is the fired timeout, nil for an event.
	Timeout *FiredTimeout
}

// FiredTimeout describes a timeout whose time has come.
type FiredTimeout struct {
	// Name is the name the step scheduled it with; ID identifies that
	// scheduling.
	Name, ID string
	// ScheduledAt is when the step scheduled it, Due when it was due.
	ScheduledAt, Due time.Time
}

// EventBinding binds an event type to a saga. Build it with [StartOn] or
// [On].
type EventBinding struct {
	starts   bool
	newEvent func() any
	key      func(any) string
	hasKey   bool
}

// StartOn binds event type E as one that starts an instance: an E for an
// instance that does not exist yet creates it. key returns the instance ID
// (an order ID) of an event. An E for an existing instance is a step like
// any other.
func StartOn[E any](key func(*E) string) EventBinding {
	b := On(key)
	b.starts = true
	return b
}

// On binds event type E as one that continues an instance. An E for an
// instance that does not exist is acknowledged, logged and counted
// ([Manager.UnroutedEvents]), not applied. key returns the instance ID of an
// event.
func On[E any](key func(*E) string) EventBinding {
	return EventBinding{
		newEvent: func() any { return new(E) },
		key: func(e any) string {
			ev, ok := e.(*E)
			if !ok || ev == nil {
				return ""
			}
			return key(ev)
		},
		hasKey: key != nil,
	}
}

// Codec encodes and decodes a saga's state for the store.
type Codec[S any] interface {
	Encode(state S) ([]byte, error)
	Decode(data []byte) (S, error)
}

// JSONCodec encodes the state with encoding/json.
type JSONCodec[S any] struct{}

// Encode implements [Codec].
func (JSONCodec[S]) Encode(state S) ([]byte, error) { return json.Marshal(state) }

// Decode implements [Codec].
func (JSONCodec[S]) Decode(data []byte) (S, error) {
	var s S
	err := json.Unmarshal(data, &s)
	return s, err
}
