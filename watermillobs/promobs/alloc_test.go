package promobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// TestAllocs pins the allocations per message of the paths that run for
// every message: one for the handler middleware (the "already observed"
// marker), none for the publisher decorator; with a sampled span the same
// while the exemplar interval holds exemplars back.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	m, _ := newMetrics(t, promobs.WithExemplarInterval(time.Hour))
	h := m.HandlerMiddleware()(noop)
	pub := m.DecoratePublisher(&fakePublisher{})
	msg := newMessage("name", "OrderPlaced", "message_kind", "event",
		"published_at", "2026-01-02T03:04:05.123456789Z")
	msgs := []*message.Message{msg}
	sampled, _ := sampledContext(true)
	tests := []struct {
		name string
		want float64
		f    func()
	}{
		{"HandlerMiddleware", 1, func() {
			msg.SetContext(context.Background())
			_, _ = h(msg)
		}},
		{"DecoratePublisher", 0, func() {
			msg.SetContext(context.Background())
			_ = pub.Publish("orders", msgs...)
		}},
		{"HandlerMiddleware sampled", 1, func() {
			msg.SetContext(sampled)
			_, _ = h(msg)
		}},
		{"DecoratePublisher sampled", 0, func() {
			msg.SetContext(sampled)
			_ = pub.Publish("orders", msgs...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.f() // create the series
			if got := testing.AllocsPerRun(100, tt.f); got != tt.want {
				t.Errorf("%v allocations per message, want %v", got, tt.want)
			}
		})
	}
}
