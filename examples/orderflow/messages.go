package main

// The commands, events and query of the order system. Every event goes to
// one topic (the order saga's handlers group reads one topic); every command
// to a topic of its own.

// Commands.
type (
	// PlaceOrder is what a customer asks for; the orders service handles it.
	PlaceOrder struct {
		OrderID string
		Amount  int
		// Card scripts the payment service: cardOK, cardDeclined or
		// cardUnresponsive.
		Card string
	}
	// ReserveStock asks the stock service to reserve an order's items.
	ReserveStock struct{ OrderID string }
	// ChargePayment asks the payment service to charge an order.
	ChargePayment struct {
		OrderID string
		Amount  int
		Card    string
	}
	// ShipOrder asks the shipping service to ship a paid order.
	ShipOrder struct{ OrderID string }
	// ReleaseStock compensates ReserveStock.
	ReleaseStock struct{ OrderID string }
)

// Events.
type (
	// OrderPlaced starts the order saga.
	OrderPlaced struct {
		OrderID string
		Amount  int
		Card    string
	}
	// StockReserved answers ReserveStock.
	StockReserved struct{ OrderID string }
	// PaymentCharged answers ChargePayment when the card was charged.
	PaymentCharged struct{ OrderID string }
	// PaymentFailed answers ChargePayment when the card was declined.
	PaymentFailed struct {
		OrderID string
		Reason  string
	}
	// OrderShipped answers ShipOrder.
	OrderShipped struct{ OrderID string }
	// StockReleased answers ReleaseStock. No saga step needs it; an
	// order-summary projection does.
	StockReleased struct{ OrderID string }
)

// Query and its result.
type (
	// GetOrderStatus asks for an order's state, through request/reply.
	GetOrderStatus struct{ OrderID string }
	// OrderStatus is the answer to GetOrderStatus.
	OrderStatus struct {
		OrderID string
		Status  string // the saga's state name
		Outcome string // "" while the saga runs
		// Summary is the order-summary projection's view: the furthest of
		// placed, stock reserved, paid, payment failed, stock released,
		// shipped; "" before it saw the order.
		Summary string
	}
)

// The cards of the scripted payment service.
const (
	cardOK = "ok"
	// cardDeclined: the gateway is unavailable on the first attempt (the
	// handler fails and the command is redelivered), then declines: the
	// payment service answers PaymentFailed.
	cardDeclined = "declined"
	// cardUnresponsive: the payment service never answers, so the saga's
	// payment timeout compensates.
	cardUnresponsive = "unresponsive"
)

// cardFor scripts the i-th order (from 0): every fifth order fails its
// payment, alternately declined and unanswered.
func cardFor(i int) string {
	switch i % 10 {
	case 4:
		return cardDeclined
	case 9:
		return cardUnresponsive
	}
	return cardOK
}
