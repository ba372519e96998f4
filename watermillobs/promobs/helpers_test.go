package promobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// newMetrics returns Metrics on a fresh pedantic registry, which checks
// that what is collected matches what is described.
func newMetrics(t testing.TB, opts ...promobs.Option) (*promobs.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := promobs.New(reg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// newMessage returns a message with metadata from key/value pairs.
func newMessage(kv ...string) *message.Message {
	msg := message.NewMessage("7d0f3a52-0000-4000-8000-000000000001", []byte(`{}`))
	for i := 0; i+1 < len(kv); i += 2 {
		msg.Metadata.Set(kv[i], kv[i+1])
	}
	return msg
}

func noop(*message.Message) ([]*message.Message, error) { return nil, nil }

// find returns the series of family name whose labels include the given
// name/value pairs, or nil.
func find(t testing.TB, g prometheus.Gatherer, name string, labels ...string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if label(m, labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// value returns a counter's value or a histogram's sample count, 0 when the
// series does not exist.
func value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	m := find(t, g, name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s is neither a counter nor a histogram", name)
	return 0
}

// sampledContext returns a context with a remote span context, sampled or
// not, as the tracing middleware leaves in the message context.
func sampledContext(sampled bool) (context.Context, trace.TraceID) {
	tid := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	var flags trace.TraceFlags
	if sampled {
		flags = trace.FlagsSampled
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: flags,
		Remote:     true,
	})
	return trace.ContextWithSpanContext(context.Background(), sc), tid
}

// stepClock returns a clock that starts at start and advances by step on
// every call, so that each measured duration is exactly step.
func stepClock(start time.Time, step time.Duration) func() time.Time {
	now := start
	return func() time.Time {
		t := now
		now = now.Add(step)
		return t
	}
}

// exemplarTraceID returns the trace_id label of an exemplar, or "".
func exemplarTraceID(t testing.TB, labels []*dto.LabelPair) string {
	t.Helper()
	for _, lp := range labels {
		if lp.GetName() == "trace_id" {
			return lp.GetValue()
		}
	}
	return ""
}
