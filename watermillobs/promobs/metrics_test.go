package promobs_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

func TestNew_nil_registerer(t *testing.T) {
	if _, err := promobs.New(nil); !errors.Is(err, promobs.ErrNilRegisterer) {
		t.Errorf("New(nil) error = %v, want ErrNilRegisterer", err)
	}
	if _, err := promobs.Middleware(nil); !errors.Is(err, promobs.ErrNilRegisterer) {
		t.Errorf("Middleware(nil) error = %v, want ErrNilRegisterer", err)
	}
	if _, err := promobs.PublisherDecorator(nil); !errors.Is(err, promobs.ErrNilRegisterer) {
		t.Errorf("PublisherDecorator(nil) error = %v, want ErrNilRegisterer", err)
	}
}

func TestNew_invalid(t *testing.T) {
	tests := []struct {
		name  string
		setup func(reg *prometheus.Registry)
		opts  []promobs.Option
	}{
		{"decreasing buckets", nil, []promobs.Option{promobs.WithBuckets([]float64{1, 0.5})}},
		{"NaN bucket", nil, []promobs.Option{promobs.WithBuckets([]float64{0.1, math.NaN()})}},
		{"duplicate time in queue buckets", nil, []promobs.Option{promobs.WithTimeInQueueBuckets([]float64{1, 1})}},
		{"namespace with a dash", nil, []promobs.Option{promobs.WithNamespace("my-app")}},
		{"namespace starting with a digit", nil, []promobs.Option{promobs.WithNamespace("1shop")}},
		{"const label le", nil, []promobs.Option{promobs.WithConstLabels(prometheus.Labels{"le": "x"})}},
		{"const label clashes with a label", nil, []promobs.Option{promobs.WithConstLabels(prometheus.Labels{"topic": "x"})}},
		{"name taken with other labels", func(reg *prometheus.Registry) {
			reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "cqrs_message_total", Help: "Someone else's.",
			}, []string{"type"}))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			if tt.setup != nil {
				tt.setup(reg)
			}
			m, err := promobs.New(reg, tt.opts...)
			if err == nil || m != nil {
				t.Fatalf("New = %v, %v; want an error", m, err)
			}
			if mfs, _ := reg.Gather(); tt.setup == nil && len(mfs) != 0 {
				t.Errorf("a failed New left %d metric families registered", len(mfs))
			}
		})
	}
}

// foreignRegisterer claims that an unrelated collector is already
// registered.
type foreignRegisterer struct{ prometheus.Registerer }

func (foreignRegisterer) Register(prometheus.Collector) error {
	return prometheus.AlreadyRegisteredError{ExistingCollector: prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "x"})}
}

func TestNew_foreign_existing_collector(t *testing.T) {
	if _, err := promobs.New(foreignRegisterer{}); err == nil {
		t.Error("New reused a collector it did not create")
	}
}

func TestNew_twice_shares_series(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	mw1, err := promobs.Middleware(reg)
	if err != nil {
		t.Fatal(err)
	}
	mw2, err := promobs.Middleware(reg, promobs.WithMaxMessageTypes(1))
	if err != nil {
		t.Fatalf("second Middleware on the same registry: %v", err)
	}
	if _, err := promobs.PublisherDecorator(reg); err != nil {
		t.Fatalf("PublisherDecorator on the same registry: %v", err)
	}
	for _, mw := range []message.HandlerMiddleware{mw1, mw2} {
		if _, err := mw(noop)(newMessage("name", "OrderPlaced", "message_kind", "event")); err != nil {
			t.Fatal(err)
		}
	}
	if v := value(t, reg, "cqrs_message_total", "kind", "event", "message_type", "OrderPlaced", "outcome", "success"); v != 2 {
		t.Errorf("cqrs_message_total = %v, want 2 in one series", v)
	}
	// The cap of the first registration holds for both.
	if _, err := mw2(noop)(newMessage("name", "Other")); err != nil {
		t.Fatal(err)
	}
	if v := value(t, reg, "cqrs_message_total", "message_type", "Other"); v != 1 {
		t.Errorf("cqrs_message_total{message_type=Other} = %v, want 1", v)
	}
}

// Registerers from prometheus.WrapRegistererWith* hand back the collector
// they wrapped, so reuse works through them too.
func TestNew_twice_wrapped_registerer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"service": "orders"}, reg)
	for range 2 {
		m, err := promobs.New(wrapped)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.HandlerMiddleware()(noop)(newMessage()); err != nil {
			t.Fatal(err)
		}
	}
	if v := value(t, reg, "cqrs_message_total", "service", "orders"); v != 2 {
		t.Errorf("cqrs_message_total = %v, want 2", v)
	}
}

func TestNew_namespace_and_const_labels(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a, err := promobs.New(reg, promobs.WithNamespace("shop"), promobs.WithConstLabels(prometheus.Labels{"service": "orders"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := promobs.New(reg, promobs.WithNamespace("shop"), promobs.WithConstLabels(prometheus.Labels{"service": "billing"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*promobs.Metrics{a, b, a} {
		if _, err := m.HandlerMiddleware()(noop)(newMessage()); err != nil {
			t.Fatal(err)
		}
	}
	if v := value(t, reg, "shop_cqrs_message_total", "service", "orders"); v != 2 {
		t.Errorf("orders = %v, want 2", v)
	}
	if v := value(t, reg, "shop_cqrs_message_total", "service", "billing"); v != 1 {
		t.Errorf("billing = %v, want 1", v)
	}
}

func TestMetrics_lint(t *testing.T) {
	m, reg := newMetrics(t, promobs.WithObserveHook(func() {}))
	ctx, _ := sampledContext(true)
	msg := newMessage("name", "OrderPlaced", "message_kind", "event",
		contract.PublishedAtKey, time.Now().Add(-time.Second).Format(time.RFC3339Nano))
	msg.SetContext(ctx)
	if _, err := m.HandlerMiddleware()(noop)(msg); err != nil {
		t.Fatal(err)
	}
	if err := m.DecoratePublisher(&fakePublisher{}).Publish("orders", msg); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	// cqrs duration and total, consumed, time in queue, published, publish
	// duration, and the internal error and recovered panics counters that
	// exist from the start.
	if n != 8 {
		t.Errorf("gathered %d series, want 8", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
