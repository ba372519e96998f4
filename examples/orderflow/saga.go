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
}

// orderSaga is the order saga as README "Trace a saga across Redis Streams"
// defines it, plus the PaymentFailed answer: OrderPlaced -> ReserveStock ->
// StockReserved -> ChargePayment -> PaymentCharged -> ShipOrder ->
// OrderShipped, compensated by ReleaseStock when the payment fails or does
// not come within paymentTimeout.
func orderSaga(paymentTimeout time.Duration) sagas.Definition[Order] {
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
				return sagas.Result[Order]{State: o, Status: "payment_timed_out",
					Commands: []any{&ReleaseStock{OrderID: o.ID}}, End: sagas.OutcomeCompensated}, nil
			}
			switch e := in.Event.(type) {
			case *OrderPlaced:
				return sagas.Result[Order]{State: Order{ID: e.OrderID, Amount: e.Amount, Card: e.Card}, Status: "reserving_stock",
					Commands: []any{&ReserveStock{OrderID: e.OrderID}}}, nil
			case *StockReserved:
				return sagas.Result[Order]{State: o, Status: "awaiting_payment",
					Commands: []any{&ChargePayment{OrderID: o.ID, Amount: o.Amount, Card: o.Card}},
					Schedule: []sagas.ScheduleTimeout{{Name: paymentTimeoutName, After: paymentTimeout}}}, nil
			case *PaymentCharged:
				return sagas.Result[Order]{State: o, Status: "shipping",
					Commands: []any{&ShipOrder{OrderID: o.ID}}, Cancel: []string{paymentTimeoutName}}, nil
			case *PaymentFailed:
				return sagas.Result[Order]{State: o, Status: "payment_failed",
					Commands: []any{&ReleaseStock{OrderID: o.ID}}, Cancel: []string{paymentTimeoutName},
					End: sagas.OutcomeCompensated}, nil
			case *OrderShipped:
				return sagas.Result[Order]{State: o, Status: "shipped", End: sagas.OutcomeCompleted}, nil
			}
			return sagas.Result[Order]{State: o}, nil // a late duplicate: nothing to do
		},
	}
}
