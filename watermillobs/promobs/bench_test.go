package promobs_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

// BenchmarkMiddleware measures the cost per handled message of the
// middleware around a no-op handler, called directly (no router), against
// the bare handler.
func BenchmarkMiddleware(b *testing.B) {
	m, _ := newMetrics(b)
	sampled, _ := sampledContext(true)
	benchmarks := []struct {
		name string
		ctx  context.Context
		h    message.HandlerFunc
	}{
		{"none", context.Background(), noop},
		{"promobs", context.Background(), m.HandlerMiddleware()(noop)},
		{"promobs_sampled_span", sampled, m.HandlerMiddleware()(noop)},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			msg := newMessage("name", "OrderPlaced", "message_kind", "event",
				"published_at", "2026-01-02T03:04:05.123456789Z")
			b.ReportAllocs()
			for b.Loop() {
				// A fresh context, as for a newly received message.
				msg.SetContext(bm.ctx)
				if _, err := bm.h(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
