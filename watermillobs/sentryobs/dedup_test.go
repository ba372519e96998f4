package sentryobs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/getsentry/sentry-go"

	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs"
)

// fakeClock is a clock the test moves by hand; safe for the router's
// goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newCapture returns a Capture on a recording hub with a fake clock.
func newCapture(t *testing.T, opts ...sentryobs.Option) (*sentryobs.Capture, *sentry.MockTransport, *fakeClock) {
	t.Helper()
	hub, transport := newHub(t)
	c := sentryobs.New(append([]sentryobs.Option{sentryobs.WithHub(hub)}, opts...)...)
	clock := newFakeClock()
	sentryobs.SetClock(c, clock.Now)
	return c, transport, clock
}

func failing(*message.Message) ([]*message.Message, error) { return nil, errDeclined }

func TestRetry_poison_queue_one_event_with_attempts(t *testing.T) {
	const poisonTopic = "orders.poison"
	hub, transport := newHub(t)
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubSub.Close() })
	poisoned, err := pubSub.Subscribe(context.Background(), poisonTopic)
	if err != nil {
		t.Fatalf("cannot subscribe to the poison topic: %v", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("cannot create router: %v", err)
	}
	poison, err := middleware.PoisonQueue(pubSub, poisonTopic)
	if err != nil {
		t.Fatalf("cannot create poison queue: %v", err)
	}
	router.AddMiddleware(poison)
	var calls int
	var callsMu sync.Mutex
	err = watermillobs.Instrument(router, watermillobs.InstrumentConfig{
		Backends: []watermillobs.Backend{sentryobs.New(sentryobs.WithHub(hub))},
		Retry:    middleware.Retry{MaxRetries: 3}.Middleware,
	})
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	router.AddConsumerHandler(routerHandler, routerTopic, pubSub, func(*message.Message) error {
		callsMu.Lock()
		calls++
		callsMu.Unlock()
		return errDeclined
	})
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := router.Close(); err != nil {
			t.Errorf("cannot close router: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("router failed: %v", err)
		}
	})
	<-router.Running()
	msg := newMessage(nil)
	if err := pubSub.Publish(routerTopic, msg); err != nil {
		t.Fatalf("cannot publish: %v", err)
	}

	select {
	case p := <-poisoned:
		p.Ack()
		if p.UUID != msg.UUID {
			t.Errorf("poison topic got message %s, want %s", p.UUID, msg.UUID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message did not reach the poison topic")
	}

	events := transport.Events()
	if len(events) != 1 {
		t.Fatalf("captured %d events for one poison message, want 1", len(events))
	}
	if got := events[0].Tags[sentryobs.TagAttempts]; got != "4" {
		t.Errorf("tag %s = %q, want 4 (one attempt and three retries)", sentryobs.TagAttempts, got)
	}
	if got := events[0].Tags[sentryobs.TagHandler]; got != routerHandler {
		t.Errorf("tag %s = %q, want %q", sentryobs.TagHandler, got, routerHandler)
	}
	callsMu.Lock()
	defer callsMu.Unlock()
	if calls != 4 {
		t.Errorf("handler ran %d times, want 4", calls)
	}
}

func TestAttempts_tag_on_panic(t *testing.T) {
	c, transport, _ := newCapture(t)
	retry := middleware.Retry{MaxRetries: 3}.Middleware
	h := c.HandlerMiddleware()(watermillobs.CountAttempts(retry)(func(*message.Message) ([]*message.Message, error) {
		panic("boom")
	}))

	func() {
		defer func() { _ = recover() }()
		_, _ = h(newMessage(nil))
	}()

	events := transport.Events()
	if len(events) != 1 {
		t.Fatalf("captured %d events, want 1", len(events))
	}
	if got := events[0].Tags[sentryobs.TagAttempts]; got != "1" {
		t.Errorf("tag %s = %q, want 1: Retry does not retry panics", sentryobs.TagAttempts, got)
	}
}

func TestAttempts_tag_unset_without_counting(t *testing.T) {
	c, transport, _ := newCapture(t)
	_, _ = c.HandlerMiddleware()(failing)(newMessage(nil))

	events := transport.Events()
	if len(events) != 1 {
		t.Fatalf("captured %d events, want 1", len(events))
	}
	if v, ok := events[0].Tags[sentryobs.TagAttempts]; ok {
		t.Errorf("tag %s = %q without a counted retry, want it unset", sentryobs.TagAttempts, v)
	}
}

func TestDedup_router_redeliveries(t *testing.T) {
	const failures = 8
	c, transport, clock := newCapture(t)
	done := make(chan struct{})
	var calls, eventsBeforeAdvance int
	handler := func(*message.Message) error {
		// Deliveries of one message are sequential, each redelivery
		// following the nack of the one before, so calls needs no lock;
		// the race detector checks that.
		calls++
		switch {
		case calls == failures/2+1:
			eventsBeforeAdvance = len(transport.Events())
			clock.Advance(sentryobs.DefaultDedupWindow)
		case calls > failures:
			close(done)
			return nil
		}
		return errDeclined
	}

	runRouter(t, c.HandlerMiddleware(), handler, newMessage(nil))
	waitFor(t, done)

	if eventsBeforeAdvance != 1 {
		t.Errorf("captured %d events for %d deliveries within the window, want 1", eventsBeforeAdvance, failures/2)
	}
	if n := len(transport.Events()); n != 2 {
		t.Errorf("captured %d events for %d failures spanning two windows, want 2", n, failures)
	}
}

func TestDedup_window_runs_from_the_report(t *testing.T) {
	c, transport, clock := newCapture(t, sentryobs.WithDedupWindow(10*time.Second))
	h := c.HandlerMiddleware()(failing)
	msg := newMessage(nil)

	var reported []int
	for i := 1; i <= 5; i++ {
		before := len(transport.Events())
		if _, err := h(msg); err != errDeclined {
			t.Fatalf("call %d returned %v, want the handler's error", i, err)
		}
		if len(transport.Events()) > before {
			reported = append(reported, i)
		}
		clock.Advance(4 * time.Second)
	}

	// Reports at 0s and 12s; the suppressed ones at 4s and 8s do not
	// push the window on, the one at 16s is within the second window.
	if fmt.Sprint(reported) != "[1 4]" {
		t.Errorf("calls reported: %v, want [1 4]", reported)
	}
}

func TestDedup_panics(t *testing.T) {
	c, transport, _ := newCapture(t)
	h := c.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { panic("boom") })
	msg := newMessage(nil)

	for i := range 3 {
		v := func() (v any) {
			defer func() { v = recover() }()
			_, _ = h(msg)
			return nil
		}()
		if v != "boom" {
			t.Errorf("call %d re-raised %#v, want the handler's panic", i, v)
		}
	}

	if n := len(transport.Events()); n != 1 {
		t.Errorf("captured %d events for three panics of one message, want 1", n)
	}
}

func TestDedup_reports_each_message_once(t *testing.T) {
	tests := []struct {
		name       string
		opts       []sentryobs.Option
		uuids      []string
		wantEvents int
	}{
		{name: "same uuid", uuids: []string{"a", "a", "a"}, wantEvents: 1},
		{name: "distinct uuids", uuids: []string{"a", "b", "c"}, wantEvents: 3},
		{name: "empty uuid is not deduplicated", uuids: []string{"", "", ""}, wantEvents: 3},
		{name: "disabled", opts: []sentryobs.Option{sentryobs.WithDedupWindow(0)}, uuids: []string{"a", "a", "a"}, wantEvents: 3},
		{name: "negative window disables", opts: []sentryobs.Option{sentryobs.WithDedupWindow(-time.Second)}, uuids: []string{"a", "a"}, wantEvents: 2},
		{name: "bad size keeps default", opts: []sentryobs.Option{sentryobs.WithDedupSize(-1)}, uuids: []string{"a", "a"}, wantEvents: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, transport, _ := newCapture(t, tt.opts...)
			h := c.HandlerMiddleware()(failing)
			for _, id := range tt.uuids {
				if _, err := h(message.NewMessage(id, nil)); err != errDeclined {
					t.Fatalf("handler returned %v, want the handler's error", err)
				}
			}
			if n := len(transport.Events()); n != tt.wantEvents {
				t.Errorf("captured %d events, want %d", n, tt.wantEvents)
			}
		})
	}
}

func TestDedup_ignored_errors_do_not_count(t *testing.T) {
	c, transport, _ := newCapture(t)
	msg := newMessage(nil)
	first := true
	h := c.HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) {
		if first {
			first = false
			return nil, context.Canceled
		}
		return nil, errDeclined
	})

	_, _ = h(msg)
	_, _ = h(msg)

	if n := len(transport.Events()); n != 1 {
		t.Errorf("captured %d events, want 1: the ignored error must not suppress the real one", n)
	}
}

func TestDedup_fan_out_reports_each_handler(t *testing.T) {
	c, transport, _ := newCapture(t)
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("cannot create router: %v", err)
	}
	router.AddMiddleware(c.HandlerMiddleware())
	var wg sync.WaitGroup
	wg.Add(2)
	for _, name := range []string{"billing", "shipping"} {
		var once sync.Once
		router.AddConsumerHandler(name, routerTopic, pubSub, func(*message.Message) error {
			failed := false
			once.Do(func() { failed = true })
			if failed {
				return errDeclined
			}
			wg.Done()
			return nil
		})
	}
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = router.Close()
		<-done
		_ = pubSub.Close()
	})
	<-router.Running()
	if err := pubSub.Publish(routerTopic, newMessage(nil)); err != nil {
		t.Fatalf("cannot publish: %v", err)
	}
	wg.Wait()

	handlers := map[string]int{}
	for _, e := range transport.Events() {
		handlers[e.Tags[sentryobs.TagHandler]]++
	}
	if handlers["billing"] != 1 || handlers["shipping"] != 1 || len(handlers) != 2 {
		t.Errorf("events per handler: %v, want one for billing and one for shipping", handlers)
	}
}

func TestDedup_memory_is_bounded(t *testing.T) {
	const size = 8
	c, transport, _ := newCapture(t, sentryobs.WithDedupSize(size))
	h := c.HandlerMiddleware()(failing)

	for i := range 100 {
		_, _ = h(message.NewMessage(fmt.Sprintf("uuid-%d", i), nil))
		if n := sentryobs.DedupLen(c); n > size {
			t.Fatalf("after %d messages the set holds %d entries, want at most %d", i+1, n, size)
		}
	}
	if n := len(transport.Events()); n != 100 {
		t.Fatalf("captured %d events for 100 distinct messages, want 100", n)
	}

	// The oldest was evicted and is reported again; the newest is not.
	_, _ = h(message.NewMessage("uuid-0", nil))
	_, _ = h(message.NewMessage("uuid-99", nil))
	if n := len(transport.Events()); n != 101 {
		t.Errorf("captured %d events, want 101: the evicted message reported again, the remembered one not", n)
	}
}

func TestDedup_concurrent(t *testing.T) {
	for _, size := range []int{sentryobs.DefaultDedupSize, 4} {
		t.Run(fmt.Sprint("size ", size), func(t *testing.T) {
			c, transport, _ := newCapture(t, sentryobs.WithDedupSize(size))
			h := c.HandlerMiddleware()(failing)
			const uuids = 20
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					for i := range 50 {
						_, _ = h(message.NewMessage(fmt.Sprintf("uuid-%d", (g+i)%uuids), nil))
					}
				})
			}
			wg.Wait()

			if n := sentryobs.DedupLen(c); n > size {
				t.Errorf("the set holds %d entries, want at most %d", n, size)
			}
			n := len(transport.Events())
			if size >= uuids && n != uuids {
				t.Errorf("captured %d events for %d messages, want one each", n, uuids)
			}
			if n < uuids || n > 16*50 {
				t.Errorf("captured %d events, want between %d and %d", n, uuids, 16*50)
			}
		})
	}
}
