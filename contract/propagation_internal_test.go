package contract

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace"
)

// With no propagator anywhere, W3C TraceContext is used and one Info
// record says so, once per process.
func TestPropagation_default_is_logged_once(t *testing.T) {
	if _, set := otel.GetTextMapPropagator().(unsetGlobal); !set {
		t.Skip("a global propagator was set earlier in this process")
	}
	defaultPropagatorLog = sync.Once{}
	var logs bytes.Buffer
	p := NewPropagation(PropagationConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tp := trace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	defer span.End()
	for range 3 {
		msg := message.NewMessage("m", nil)
		p.Inject(ctx, msg)
		if msg.Metadata.Get(TraceparentKey) == "" {
			t.Fatal("no traceparent: the default must be W3C TraceContext")
		}
	}
	if n := strings.Count(logs.String(), "W3C TraceContext"); n != 1 || !strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("want one Info record about the default propagator, got %d in:\n%s", n, logs.String())
	}
}
