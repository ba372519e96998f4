package sagas_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// A poison step is retried MaxFailures times, each failure saved with its
// error; then the instance is failed and the event acknowledged.
func TestManager_poison_fails_the_instance(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(t *testing.T, store sagas.Store, def *sagas.Definition[OrderState])
		wantErr error
		wantMsg string
	}{
		{
			name: "state does not decode",
			breakIt: func(t *testing.T, store sagas.Store, _ *sagas.Definition[OrderState]) {
				ctx := context.Background()
				inst, _, err := store.Load(ctx, sagaType, "o-6")
				if err != nil {
					t.Fatal(err)
				}
				inst.State = []byte("\x00 not json")
				inst.Version++
				if err := store.Save(ctx, sagas.SaveRequest{Instance: inst, Expected: inst.Version - 1, Record: sagas.StepRecord{Version: inst.Version, Trigger: "event", EventType: "Corruption", FromState: inst.Status, ToState: inst.Status, Outcome: "running"}}); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: sagas.ErrUndecodableState,
			wantMsg: "state does not decode",
		},
		{
			name: "step panics",
			breakIt: func(t *testing.T, _ sagas.Store, def *sagas.Definition[OrderState]) {
				def.Step = func(ctx context.Context, s OrderState, in sagas.Input) (sagas.Result[OrderState], error) {
					if in.EventType == "PaymentCharged" {
						panic("payment bug")
					}
					return orderStep(ctx, s, in)
				}
			},
			wantErr: sagas.ErrStepPanicked,
			wantMsg: "payment bug",
		},
		{
			name: "step returns an error",
			breakIt: func(t *testing.T, _ sagas.Store, def *sagas.Definition[OrderState]) {
				def.Step = func(ctx context.Context, s OrderState, in sagas.Input) (sagas.Result[OrderState], error) {
					if in.EventType == "PaymentCharged" {
						return sagas.Result[OrderState]{}, errors.New("no carrier for this country")
					}
					return orderStep(ctx, s, in)
				}
			},
			wantErr: sagas.ErrPoison,
			wantMsg: "no carrier for this country",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
				w := newWorld(t, newStore(t))
				logs := &logBuffer{}
				cfg := w.config()
				cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
				def := orderSaga()
				// Break the step only after the saga reached awaiting_payment.
				var broken sagas.Definition[OrderState] = def
				step := func(ctx context.Context, s OrderState, in sagas.Input) (sagas.Result[OrderState], error) {
					return broken.Step(ctx, s, in)
				}
				def.Step = step
				m, res := w.manager(cfg, def, true)
				w.publish("8b1f0c35-0000-4000-8000-000000000061", "corr-6", &OrderPlaced{OrderID: "o-6", Amount: slowPayment})
				w.waitStatus("o-6", "awaiting_payment")
				tc.breakIt(t, w.store, &broken)

				const paid = "8b1f0c35-0000-4000-8000-000000000062"
				w.publish(paid, "corr-6", &PaymentCharged{OrderID: "o-6"})
				inst := w.waitFor("o-6", "failed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeFailed })
				eventually(t, "event acked", func() bool { return res.acked(paid) })

				outs := res.of(paid)
				if len(outs) != 3 || !errors.Is(outs[0], sagas.ErrPoison) || !errors.Is(outs[1], tc.wantErr) || outs[2] != nil {
					t.Errorf("handler results = %v, want two nacks wrapping %v and an ack", outs, tc.wantErr)
				}
				if inst.Failures != 3 || !strings.Contains(inst.LastError, tc.wantMsg) || inst.Status != "awaiting_payment" || len(inst.Timeouts) != 0 {
					t.Errorf("instance = %+v, want 3 failures with %q, status kept, timeouts dropped", inst, tc.wantMsg)
				}
				recs := history(t, m, "o-6")
				fails := recs[len(recs)-3:]
				wantSteps(t, fails,
					"event:PaymentCharged awaiting_payment->awaiting_payment(error)",
					"event:PaymentCharged awaiting_payment->awaiting_payment(error)",
					"event:PaymentCharged awaiting_payment->awaiting_payment(failed)",
				)
				for _, r := range fails {
					if !strings.Contains(r.Error, tc.wantMsg) || r.EventID != paid {
						t.Errorf("failure record = %+v, want the error %q and event %s", r, tc.wantMsg, paid)
					}
				}
				if n := len(w.handled("ShipOrder")); n != 0 {
					t.Errorf("ShipOrder handled %d times", n)
				}
				assertLogged(t, logs.String(), "ERROR", map[string]any{
					"saga.type": sagaType, "saga.id": "o-6", "event.type": "PaymentCharged", "event.id": paid, "attempt": float64(1),
				}, tc.wantMsg)
			})
		})
	}
}

// assertLogged checks that a JSON log line of level has the fields and an
// "error" containing errText.
func assertLogged(t *testing.T, logs, level string, fields map[string]any, errText string) {
	t.Helper()
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		if rec["level"] != level {
			continue
		}
		match := true
		for k, v := range fields {
			if rec[k] != v {
				match = false
			}
		}
		if e, _ := rec["error"].(string); match && strings.Contains(e, errText) {
			return
		}
	}
	t.Errorf("no %s log line with %v and error %q in:\n%s", level, fields, errText, logs)
}

// A timeout step that keeps panicking is retried by each recovery pass
// until MaxFailures, then the instance is failed and the timeout gone.
func TestManager_poison_timeout_step_fails_the_instance(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		def := orderSaga()
		def.Step = func(ctx context.Context, s OrderState, in sagas.Input) (sagas.Result[OrderState], error) {
			if in.Timeout != nil {
				panic("compensation bug")
			}
			return orderStep(ctx, s, in)
		}
		m, _ := w.manager(w.config(), def, true)
		w.publish("8b1f0c35-0000-4000-8000-000000000161", "corr-16", &OrderPlaced{OrderID: "o-16", Amount: slowPayment})
		w.waitStatus("o-16", "awaiting_payment")
		w.clock.Advance(paymentDeadline)
		for range 4 {
			if err := m.RecoverOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		inst := w.waitFor("o-16", "failed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeFailed })
		if len(inst.Timeouts) != 0 || inst.Failures != 3 {
			t.Errorf("instance = %+v, want 3 failures and no timeout left", inst)
		}
		wantSteps(t, history(t, m, "o-16"),
			"event:OrderPlaced ->reserving_stock(running)",
			"event:StockReserved reserving_stock->awaiting_payment(running)",
			"timeout:payment awaiting_payment->awaiting_payment(error)",
			"timeout:payment awaiting_payment->awaiting_payment(error)",
			"timeout:payment awaiting_payment->awaiting_payment(failed)",
		)
	})
}

// An instance whose stored record does not load (a damaged hash field, not
// the state) cannot be marked failed: the event is nacked MaxFailures-1
// times, then acknowledged with an error log line and a
// saga.instance.corrupt notification, so that it does not block its saga
// type.
func TestManager_corrupt_instance_gives_up_on_the_event(t *testing.T) {
	client, prefix := testsvc.RedisPrefix(t)
	store := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix})
	w := newWorld(t, store)
	logs := &logBuffer{}
	cfg := w.config()
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	ops := &opRecorder{}
	cfg.Registry.MustRegister(hooks.HookFunc(ops.hook), hooks.WithOperations("saga.instance.corrupt"))
	_, res := w.manager(cfg, orderSaga(), true)

	w.publish("8b1f0c35-0000-4000-8000-000000000071", "corr-7", &OrderPlaced{OrderID: "o-7", Amount: slowPayment})
	w.waitStatus("o-7", "awaiting_payment")

	ctx := context.Background()
	keys, err := client.Keys(ctx, prefix+"*inst:o-7").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("instance key: %v %v", keys, err)
	}
	if err := client.HSet(ctx, keys[0], "version", "not a number").Err(); err != nil {
		t.Fatal(err)
	}

	const paid = "8b1f0c35-0000-4000-8000-000000000072"
	w.publish(paid, "corr-7", &PaymentCharged{OrderID: "o-7"})
	eventually(t, "event acked", func() bool { return res.acked(paid) })
	outs := res.of(paid)
	if len(outs) != 3 || !errors.Is(outs[0], sagas.ErrPoison) || outs[1] == nil || outs[2] != nil {
		t.Errorf("handler results = %v, want two nacks wrapping ErrPoison and an ack", outs)
	}
	var corrupt *sagas.CorruptInstanceError
	if len(outs) > 0 && (!errors.As(outs[0], &corrupt) || corrupt.Field != "version" || corrupt.ID != "o-7") {
		t.Errorf("error %v, want a CorruptInstanceError for field version of o-7", outs[0])
	}
	assertLogged(t, logs.String(), "ERROR", map[string]any{
		"saga.type": sagaType, "saga.id": "o-7", "event.id": paid, "saga.corrupt_field": "version",
	}, "corrupt")
	if err := cfg.Registry.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ops.named("saga.instance.corrupt"); len(got) != 1 {
		t.Errorf("saga.instance.corrupt notifications = %d, want 1", len(got))
	}
	if n := len(w.handled("ShipOrder")); n != 0 {
		t.Errorf("ShipOrder handled %d times", n)
	}
}
