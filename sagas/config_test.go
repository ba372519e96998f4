package sagas_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

func validConfig() sagas.Config {
	return sagas.Config{
		Store:                sagas.NewMemoryStore(),
		Publisher:            gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}),
		Marshaler:            marshaler,
		GenerateCommandTopic: commandTopic,
	}
}

func TestNewManager_config(t *testing.T) {
	cases := []struct {
		name    string
		modify  func(*sagas.Config)
		wantErr string
	}{
		{name: "valid", modify: func(*sagas.Config) {}},
		{name: "missing Store", modify: func(c *sagas.Config) { c.Store = nil }, wantErr: "missing Store"},
		{name: "missing Publisher", modify: func(c *sagas.Config) { c.Publisher = nil }, wantErr: "missing Publisher"},
		{name: "missing Marshaler", modify: func(c *sagas.Config) { c.Marshaler = nil }, wantErr: "missing Marshaler"},
		{name: "missing GenerateCommandTopic", modify: func(c *sagas.Config) { c.GenerateCommandTopic = nil }, wantErr: "missing GenerateCommandTopic"},
		{name: "negative LockTTL", modify: func(c *sagas.Config) { c.LockTTL = -time.Second }, wantErr: "negative LockTTL"},
		{name: "negative MaxFailures", modify: func(c *sagas.Config) { c.MaxFailures = -1 }, wantErr: "negative MaxFailures"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.modify(&cfg)
			_, err := sagas.NewManager(cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "invalid config") {
				t.Errorf("error %v, want invalid config: %s", err, tc.wantErr)
			}
		})
	}
	t.Run("every problem is reported", func(t *testing.T) {
		_, err := sagas.NewManager(sagas.Config{})
		for _, want := range []string{"Store", "Publisher", "Marshaler", "GenerateCommandTopic"} {
			if err == nil || !strings.Contains(err.Error(), "missing "+want) {
				t.Errorf("error %v does not name missing %s", err, want)
			}
		}
	})
}

func TestRegister_validation(t *testing.T) {
	cases := []struct {
		name    string
		modify  func(*sagas.Definition[OrderState])
		wantErr string
	}{
		{name: "valid", modify: func(*sagas.Definition[OrderState]) {}},
		{name: "empty Type", modify: func(d *sagas.Definition[OrderState]) { d.Type = "" }, wantErr: "empty Type"},
		{name: "nil Step", modify: func(d *sagas.Definition[OrderState]) { d.Step = nil }, wantErr: "nil Step"},
		{name: "no Events", modify: func(d *sagas.Definition[OrderState]) { d.Events = nil }, wantErr: "no Events"},
		{name: "no StartOn", modify: func(d *sagas.Definition[OrderState]) { d.Events = d.Events[1:] }, wantErr: "no event starts an instance"},
		{name: "nil key", modify: func(d *sagas.Definition[OrderState]) {
			d.Events = append(d.Events, sagas.On[ReleaseStock](nil))
		}, wantErr: "event ReleaseStock: nil key func"},
		{name: "event bound twice", modify: func(d *sagas.Definition[OrderState]) {
			d.Events = append(d.Events, sagas.On(func(e *OrderShipped) string { return e.OrderID }))
		}, wantErr: "event OrderShipped bound twice"},
		{name: "zero binding", modify: func(d *sagas.Definition[OrderState]) {
			d.Events = append(d.Events, sagas.EventBinding{})
		}, wantErr: "not built with StartOn or On"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := sagas.NewManager(validConfig())
			if err != nil {
				t.Fatal(err)
			}
			def := orderSaga()
			tc.modify(&def)
			err = sagas.Register(m, def)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("duplicate type", func(t *testing.T) {
		m, _ := sagas.NewManager(validConfig())
		if err := sagas.Register(m, orderSaga()); err != nil {
			t.Fatal(err)
		}
		if err := sagas.Register(m, orderSaga()); err == nil || !strings.Contains(err.Error(), "registered twice") {
			t.Errorf("error %v, want registered twice", err)
		}
	})
}

func TestManager_History_unknown_saga_type(t *testing.T) {
	m, _ := sagas.NewManager(validConfig())
	if _, err := m.History(context.Background(), "NoSuchSaga", "x"); !errors.Is(err, sagas.ErrUnknownSagaType) {
		t.Errorf("error %v, want ErrUnknownSagaType", err)
	}
}

func TestManager_ActiveSagas(t *testing.T) {
	w := newWorld(t, sagas.NewMemoryStore())
	m, _ := w.manager(w.config(), orderSaga(), true)
	start := w.clock.Now()
	w.publish("8b1f0c35-0000-4000-8000-000000000121", "corr-12", &OrderPlaced{OrderID: "o-12a", Amount: slowPayment})
	w.waitStatus("o-12a", "awaiting_payment")
	w.clock.Advance(time.Minute)
	w.publish("8b1f0c35-0000-4000-8000-000000000122", "corr-12", &OrderPlaced{OrderID: "o-12b", Amount: 10})
	w.waitFor("o-12b", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
	type gauge struct {
		typ    string
		n      int64
		oldest time.Time
	}
	var got []gauge
	err := m.ActiveSagas(context.Background(), func(typ string, n int64, oldest time.Time) { got = append(got, gauge{typ, n, oldest}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].typ != sagaType || got[0].n != 1 || !got[0].oldest.Equal(start) {
		t.Errorf("ActiveSagas = %+v, want one active OrderSaga started at %s", got, start)
	}
}

// An On event for an instance that does not exist is acked and counted.
func TestManager_event_for_missing_instance_is_acked(t *testing.T) {
	w := newWorld(t, sagas.NewMemoryStore())
	m, res := w.manager(w.config(), orderSaga(), true)
	const paid = "8b1f0c35-0000-4000-8000-000000000131"
	w.publish(paid, "corr-13", &PaymentCharged{OrderID: "nobody"})
	eventually(t, "acked", func() bool { return res.acked(paid) })
	if n := m.UnroutedEvents(); n != 1 {
		t.Errorf("UnroutedEvents = %d, want 1", n)
	}
	if _, found, _ := w.store.Load(context.Background(), sagaType, "nobody"); found {
		t.Error("an On event created an instance")
	}
}
