package promobs_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

type explodingProcessor struct{}

func (explodingProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) { panic("processor bug") }
func (explodingProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (explodingProcessor) Shutdown(context.Context) error                  { return nil }
func (explodingProcessor) ForceFlush(context.Context) error                { return nil }

type discard struct{}

func (discard) Enabled(context.Context, slog.Level) bool  { return true }
func (discard) Handle(context.Context, slog.Record) error { return nil }
func (d discard) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discard) WithGroup(string) slog.Handler           { return d }

// A panic recovered in the tracing pipeline is counted, readable from
// watermillobs.RecoveredPanics and scraped from promobs, while the message
// is still handled.
func TestRecoveredPanics_exported(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := promobs.New(reg); err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(explodingProcessor{}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	handled := false
	h := watermillobs.Tracing(watermillobs.TracingConfig{}, watermillobs.WithTracerProvider(tp), watermillobs.WithLogger(slog.New(discard{})))(
		func(*message.Message) ([]*message.Message, error) { handled = true; return nil, nil })

	before := watermillobs.RecoveredPanics()
	if _, err := h(message.NewMessage("m", nil)); err != nil || !handled {
		t.Fatalf("handled=%v err=%v: the message must be handled as if uninstrumented", handled, err)
	}
	after := watermillobs.RecoveredPanics()
	if after <= before {
		t.Fatalf("RecoveredPanics %d -> %d, want it to grow", before, after)
	}
	if got := testutil.ToFloat64(mustCollector(t, reg, "watermill_observability_recovered_panics_total")); got < float64(after) {
		t.Errorf("scraped watermill_observability_recovered_panics_total = %v, want at least %d", got, after)
	}
}

// mustCollector returns a collector that gathers only the metric name from
// reg, for testutil.ToFloat64.
func mustCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := mf.GetMetric()[0].GetCounter().GetValue()
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: "copy"}, func() float64 { return v })
		}
	}
	t.Fatalf("%s not gathered", name)
	return nil
}

type panicLog struct{ discard }

func (panicLog) Handle(context.Context, slog.Record) error { panic("broken log handler") }

// A bug in promobs reported through a log handler that panics too: the
// message is still handled and the panic counted.
func TestRecoveredPanics_broken_logger(t *testing.T) {
	m, err := promobs.New(prometheus.NewRegistry(),
		promobs.WithLogger(slog.New(panicLog{})),
		promobs.WithObserveHook(func() { panic("bug in promobs") }))
	if err != nil {
		t.Fatal(err)
	}
	before := watermillobs.RecoveredPanics()
	h := m.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	if _, err := h(message.NewMessage("m", nil)); err != nil {
		t.Fatal(err)
	}
	if watermillobs.RecoveredPanics() == before {
		t.Error("the panic was not counted")
	}
}
