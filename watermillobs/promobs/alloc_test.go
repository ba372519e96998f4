package promobs_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

// TestAllocs pins the allocations per message of the paths that run for
// every message without a sampled span: one for the handler middleware (the
// "already observed" marker), none for the publisher decorator.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	m, _ := newMetrics(t)
	h := m.HandlerMiddleware()(noop)
	pub := m.DecoratePublisher(&fakePublisher{})
	msg := newMessage("name", "OrderPlaced", "message_kind", "event",
		"published_at", "2026-01-02T03:04:05.123456789Z")
	msgs := []*message.Message{msg}
	tests := []struct {
		name string
		want float64
		f    func()
	}{
		{"HandlerMiddleware", 1, func() {
			msg.SetContext(context.Background())
			_, _ = h(msg)
		}},
		{"DecoratePublisher", 0, func() { _ = pub.Publish("orders", msgs...) }},
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
