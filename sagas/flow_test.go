package sagas_test

import (
	"context"
	"crypto/sha1"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/uuidtext"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// The order flow of the multi-process tests: the same events and commands
// as the order saga of fixture_test.go, with a step that a production saga
// would have: it knows its status and ignores an event that does not fit
// it (a late duplicate from a redelivered command), so that no command is
// ever sent twice.

// flowState is the state of the flow's order saga.
type flowState struct {
	OrderID string
	Amount  int
	Status  string
}

// flowSaga is the order saga of the multi-process tests; the payment
// timeout fires after paymentTimeout.
func flowSaga(paymentTimeout time.Duration) sagas.Definition[flowState] {
	return sagas.Definition[flowState]{
		Type: sagaType,
		Events: []sagas.EventBinding{
			sagas.StartOn(func(e *OrderPlaced) string { return e.OrderID }),
			sagas.On(func(e *StockReserved) string { return e.OrderID }),
			sagas.On(func(e *PaymentCharged) string { return e.OrderID }),
			sagas.On(func(e *OrderShipped) string { return e.OrderID }),
		},
		Step: func(_ context.Context, s flowState, in sagas.Input) (sagas.Result[flowState], error) {
			next := func(status string, cmds ...any) sagas.Result[flowState] {
				s.Status = status
				return sagas.Result[flowState]{State: s, Status: status, Commands: cmds}
			}
			if in.Timeout != nil {
				if s.Status != "awaiting_payment" {
					return sagas.Result[flowState]{State: s}, nil
				}
				r := next("stock_released", &ReleaseStock{OrderID: s.OrderID})
				r.End = sagas.OutcomeCompensated
				return r, nil
			}
			switch e := in.Event.(type) {
			case *OrderPlaced:
				if s.Status != "" {
					return sagas.Result[flowState]{State: s}, nil
				}
				s.OrderID, s.Amount = e.OrderID, e.Amount
				return next("reserving_stock", &ReserveStock{OrderID: e.OrderID}), nil
			case *StockReserved:
				if s.Status != "reserving_stock" {
					return sagas.Result[flowState]{State: s}, nil
				}
				r := next("awaiting_payment", &ChargePayment{OrderID: s.OrderID, Amount: s.Amount})
				r.Schedule = []sagas.ScheduleTimeout{{Name: "payment", After: paymentTimeout}}
				return r, nil
			case *PaymentCharged:
				if s.Status != "awaiting_payment" {
					return sagas.Result[flowState]{State: s}, nil
				}
				r := next("shipping", &ShipOrder{OrderID: s.OrderID})
				r.Cancel = []string{"payment"}
				return r, nil
			case *OrderShipped:
				if s.Status != "shipping" {
					return sagas.Result[flowState]{State: s}, nil
				}
				r := next("shipped")
				r.End = sagas.OutcomeCompleted
				return r, nil
			}
			return sagas.Result[flowState]{State: s}, nil
		},
	}
}

// recordEffect is the effect of a command in the services of the flow: it
// counts each command UUID once per order and command type, so that a
// redelivered command takes effect once and a second command of a type
// (another UUID) shows as a count of 2. The keys of one order share a hash
// tag, for Redis Cluster.
var recordEffect = redis.NewScript(`
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
	redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
end
return 0`)

// effectKeys returns the keys recordEffect writes for an order.
func effectKeys(prefix, orderID string) (uuids, counts string) {
	tag := prefix + "{" + orderID + "}"
	return tag + ":command_uuids", tag + ":effects"
}

// replyUUID derives the UUID of the event a service answers a command
// with from the command's UUID, so that a redelivered command yields the
// same event, which the saga then applies once.
func replyUUID(commandUUID string) string {
	h := sha1.Sum([]byte("reply:" + commandUUID))
	return uuidtext.Format([16]byte(h[:16]), 5)
}

// setReplyUUID is an EventBusConfig.OnPublish that gives an event published
// while a command is handled the UUID replyUUID derives from it.
func setReplyUUID(p cqrs.OnEventSendParams) error {
	if cmd := cqrs.OriginalMessageFromCtx(p.Message.Context()); cmd != nil {
		p.Message.UUID = replyUUID(cmd.UUID)
	}
	return nil
}
