package main

import (
	"context"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// TestOrderSaga_steps runs the order saga's step function over the happy
// path, the declined payment, the timeout and redelivered answers.
func TestOrderSaga_steps(t *testing.T) {
	step := orderSaga(time.Second).Step
	ev := func(e any) sagas.Input { return sagas.Input{Event: e} }
	timeout := sagas.Input{Timeout: &sagas.FiredTimeout{Name: paymentTimeoutName}}
	tests := []struct {
		name      string
		inputs    []sagas.Input
		wantStage string
		wantEnd   string
		wantLast  []any // commands of the last step
	}{
		{"shipped", []sagas.Input{ev(&OrderPlaced{OrderID: "o"}), ev(&StockReserved{OrderID: "o"}), ev(&PaymentCharged{OrderID: "o"}), ev(&OrderShipped{OrderID: "o"})},
			"shipped", sagas.OutcomeCompleted, nil},
		{"declined", []sagas.Input{ev(&OrderPlaced{OrderID: "o"}), ev(&StockReserved{OrderID: "o"}), ev(&PaymentFailed{OrderID: "o"})},
			"payment_failed", sagas.OutcomeCompensated, []any{&ReleaseStock{OrderID: "o"}}},
		{"unanswered", []sagas.Input{ev(&OrderPlaced{OrderID: "o"}), ev(&StockReserved{OrderID: "o"}), timeout},
			"payment_timed_out", sagas.OutcomeCompensated, []any{&ReleaseStock{OrderID: "o"}}},
		{"stock reserved twice", []sagas.Input{ev(&OrderPlaced{OrderID: "o"}), ev(&StockReserved{OrderID: "o"}), ev(&StockReserved{OrderID: "o"})},
			stagePaying, "", nil},
		{"placed twice", []sagas.Input{ev(&OrderPlaced{OrderID: "o"}), ev(&OrderPlaced{OrderID: "o"})},
			stageReserving, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Order
			var r sagas.Result[Order]
			for _, in := range tt.inputs {
				var err error
				if r, err = step(context.Background(), o, in); err != nil {
					t.Fatal(err)
				}
				o = r.State
			}
			if o.Stage != tt.wantStage || r.End != tt.wantEnd {
				t.Errorf("stage %q, end %q; want %q, %q", o.Stage, r.End, tt.wantStage, tt.wantEnd)
			}
			if len(r.Commands) != len(tt.wantLast) {
				t.Fatalf("last step's commands %v, want %v", r.Commands, tt.wantLast)
			}
			for i, c := range r.Commands {
				if *c.(*ReleaseStock) != *tt.wantLast[i].(*ReleaseStock) {
					t.Errorf("command %d: %+v, want %+v", i, c, tt.wantLast[i])
				}
			}
		})
	}
}
