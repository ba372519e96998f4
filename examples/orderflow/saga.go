package main

import (
	"context"
	"time"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// sagaType names the order saga: its hook operation (saga.run.OrderSaga),
// its handlers group and consumer group, and its keys in the store.
const sagaType = "OrderSaga"

// paymentTimeoutName names the timeout that compensates an unanswered
// payment.
const paymentTimeoutName = "payment"

// Order is the state of one order saga.
type Order struct {
	ID     string
	Amount int
	Card   string
	// Stage is the state the saga is in, as its Status names it.
	Stage string
}

// The stages of the order saga.
const (
	stageReserving = "reserving_stock"
	stagePaying    = "awaiting_payment"
	stageShipping  = "shipping"
)

// orderSaga is the order saga as README "Trace a saga across Redis Streams"
// defines it, plus the PaymentFailed answer: OrderPlaced -> ReserveStock ->
// StockReserved -> ChargePayment -> PaymentCharged -> ShipOrder ->
// OrderShipped, compensated by ReleaseStock when the payment fails or does
// not come within paymentTimeout.
//
// Each event moves the saga on only from the stage that waits for it: a
// service that handled its command twice (a redelivery) answers twice, with
// two events of different UUIDs, and the second one must change nothing.
func orderSaga(paymentTimeout time.Duration) sagas.Definition[Order] {
	next := func(o Order, stage string, r sagas.Result[Order]) (sagas.Result[Order], error) {
		o.Stage = stage
		r.State, r.Status = o, stage
		return r, nil
	}
	return sagas.Definition[Order]{
		Type: sagaType,
		Events: []sagas.EventBinding{
			sagas.StartOn(func(e *OrderPlaced) string { return e.OrderID }),
			sagas.On(func(e *StockReserved) string { return e.OrderID }),
			sagas.On(func(e *PaymentCharged) string { return e.OrderID }),
			sagas.On(func(e *PaymentFailed) string { return e.OrderID }),
			sagas.On(func(e *OrderShipped) string { return e.OrderID }),
		},
		Step: func(ctx context.Context, o Order, in sagas.Input) (sagas.Result[Order], error) {
			if in.Timeout != nil { // "payment" fired: compensate
				return next(o, "payment_timed_out", sagas.Result[Order]{
					Commands: []any{&ReleaseStock{OrderID: o.ID}}, End: sagas.OutcomeCompensated})
			}
			switch e := in.Event.(type) {
			case *OrderPlaced:
				if o.Stage == "" {
					return next(Order{ID: e.OrderID, Amount: e.Amount, Card: e.Card}, stageReserving, sagas.Result[Order]{
						Commands: []any{&ReserveStock{OrderID: e.OrderID}}})
				}
			case *StockReserved:
				if o.Stage == stageReserving {
					return next(o, stagePaying, sagas.Result[Order]{
						Commands: []any{&ChargePayment{OrderID: o.ID, Amount: o.Amount, Card: o.Card}},
						Schedule: []sagas.ScheduleTimeout{{Name: paymentTimeoutName, After: paymentTimeout}}})
				}
			case *PaymentCharged:
				if o.Stage == stagePaying {
					return next(o, stageShipping, sagas.Result[Order]{
						Commands: []any{&ShipOrder{OrderID: o.ID}}, Cancel: []string{paymentTimeoutName}})
				}
			case *PaymentFailed:
				if o.Stage == stagePaying {
					return next(o, "payment_failed", sagas.Result[Order]{
						Commands: []any{&ReleaseStock{OrderID: o.ID}}, Cancel: []string{paymentTimeoutName},
						End: sagas.OutcomeCompensated})
				}
			case *OrderShipped:
				if o.Stage == stageShipping {
					return next(o, "shipped", sagas.Result[Order]{End: sagas.OutcomeCompleted})
				}
			}
			return sagas.Result[Order]{State: o}, nil // a late duplicate: nothing to do
		},
	}
}
