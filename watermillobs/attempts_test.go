package watermillobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

var errAttempt = errors.New("attempt failed")

// observe returns a middleware that records Attempts after the handler
// returned or panicked, as a backend outside the retry would.
func observe(got *int) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			defer func() { *got = watermillobs.Attempts(msg.Context()) }()
			return h(msg)
		}
	}
}

// failUntil returns a handler that fails until its call number reaches ok
// (never when ok is 0), and records Attempts as the handler sees it.
func failUntil(ok int, seen *[]int) message.HandlerFunc {
	calls := 0
	return func(msg *message.Message) ([]*message.Message, error) {
		calls++
		*seen = append(*seen, watermillobs.Attempts(msg.Context()))
		if ok != 0 && calls >= ok {
			return nil, nil
		}
		return nil, errAttempt
	}
}

func TestCountAttempts(t *testing.T) {
	retry3 := middleware.Retry{MaxRetries: 3}.Middleware
	tests := []struct {
		name      string
		retry     message.HandlerMiddleware
		succeedAt int
		wantErr   error
		wantSeen  string
		wantAfter int
	}{
		{name: "always fails", retry: retry3, wantErr: errAttempt, wantSeen: "[1 2 3 4]", wantAfter: 4},
		{name: "succeeds on the second attempt", retry: retry3, succeedAt: 2, wantSeen: "[1 2]", wantAfter: 2},
		{name: "succeeds at once", retry: retry3, succeedAt: 1, wantSeen: "[1]", wantAfter: 1},
		{
			name:     "context reset on retry",
			retry:    middleware.Retry{MaxRetries: 2, ResetContextOnRetry: true}.Middleware,
			wantErr:  errAttempt,
			wantSeen: "[1 2 3]", wantAfter: 3,
		},
		{
			name:     "wrapped twice counts once",
			retry:    watermillobs.CountAttempts(retry3),
			wantErr:  errAttempt,
			wantSeen: "[1 2 3 4]", wantAfter: 4,
		},
		{name: "nil retry", retry: nil, wantErr: errAttempt, wantSeen: "[1]", wantAfter: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []int
			var after int
			h := observe(&after)(watermillobs.CountAttempts(tt.retry)(failUntil(tt.succeedAt, &seen)))

			_, err := h(message.NewMessage("m-1", nil))

			if err != tt.wantErr {
				t.Errorf("returned %v, want %v", err, tt.wantErr)
			}
			if fmt.Sprint(seen) != tt.wantSeen {
				t.Errorf("handler saw Attempts %v, want %s", seen, tt.wantSeen)
			}
			if after != tt.wantAfter {
				t.Errorf("outside the retry Attempts = %d, want %d", after, tt.wantAfter)
			}
		})
	}
}

func TestCountAttempts_keeps_retry_behaviour(t *testing.T) {
	var hooked []int
	retry := middleware.Retry{
		MaxRetries:  5,
		OnRetryHook: func(n int, _ time.Duration) { hooked = append(hooked, n) },
		ShouldRetry: func(p middleware.RetryParams) bool { return p.RetryNum < 2 },
	}
	var seen []int
	var after int
	h := observe(&after)(watermillobs.CountAttempts(retry.Middleware)(failUntil(0, &seen)))

	_, err := h(message.NewMessage("m-1", nil))

	if err != errAttempt {
		t.Errorf("returned %v, want %v", err, errAttempt)
	}
	if fmt.Sprint(hooked) != "[1]" || after != 3 {
		t.Errorf("OnRetryHook saw %v and Attempts = %d, want [1] and 3 as without counting", hooked, after)
	}
}

func TestCountAttempts_nested_counts_outermost(t *testing.T) {
	outer := middleware.Retry{MaxRetries: 1}.Middleware
	inner := middleware.Retry{MaxRetries: 2}.Middleware
	var seen []int
	var after int
	h := observe(&after)(watermillobs.CountAttempts(outer)(watermillobs.CountAttempts(inner)(failUntil(0, &seen))))

	_, _ = h(message.NewMessage("m-1", nil))

	if len(seen) != 6 {
		t.Fatalf("handler ran %d times, want 6", len(seen))
	}
	if after != 2 {
		t.Errorf("Attempts = %d, want 2, the outer retry's attempts", after)
	}
}

func TestCountAttempts_panic_passes_through(t *testing.T) {
	var after int
	h := observe(&after)(watermillobs.CountAttempts(middleware.Retry{MaxRetries: 3}.Middleware)(
		func(*message.Message) ([]*message.Message, error) { panic("boom") }))

	v := func() (v any) {
		defer func() { v = recover() }()
		_, _ = h(message.NewMessage("m-1", nil))
		return nil
	}()

	if v != "boom" {
		t.Errorf("recovered %#v, want the handler's panic", v)
	}
	if after != 1 {
		t.Errorf("Attempts after the panic = %d, want 1", after)
	}
}

func TestCountAttempts_same_message_again_starts_over(t *testing.T) {
	var seen []int
	var after int
	h := observe(&after)(watermillobs.CountAttempts(middleware.Retry{MaxRetries: 1}.Middleware)(failUntil(0, &seen)))
	msg := message.NewMessage("m-1", nil)

	_, _ = h(msg)
	_, _ = h(msg)

	if after != 2 || fmt.Sprint(seen) != "[1 2 1 2]" {
		t.Errorf("second delivery: Attempts %d, handler saw %v; want 2 and [1 2 1 2]", after, seen)
	}
}

func TestAttempts_not_counted(t *testing.T) {
	// A nil context must not panic.
	for _, ctx := range []context.Context{context.Background(), nil} {
		if n := watermillobs.Attempts(ctx); n != 0 {
			t.Errorf("Attempts(%v) = %d, want 0", ctx, n)
		}
	}
}

// TestInstrument_Retry checks the place of the retry: inside the
// process span and the backends, which see one outcome per delivery, and
// outside the consume hooks, which run per attempt.
func TestInstrument_Retry(t *testing.T) {
	for _, retry := range []bool{true, false} {
		t.Run(fmt.Sprint("retry ", retry), func(t *testing.T) {
			rec, _, opts := newTracing(t)
			reg := hooks.NewRegistry()
			var mu sync.Mutex
			var consumed, backendSaw, handlerSaw []int
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				mu.Lock()
				consumed = append(consumed, 1)
				mu.Unlock()
				return next(ctx)
			}), hooks.WithOperations("consumer.consume.*"))
			backend := backendFunc(func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					msgs, err := h(msg)
					mu.Lock()
					backendSaw = append(backendSaw, watermillobs.Attempts(msg.Context()))
					mu.Unlock()
					return msgs, err
				}
			})
			pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
			router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
			if err != nil {
				t.Fatal(err)
			}
			opts = append(opts, watermillobs.WithHookRegistry(reg))
			config := watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{backend}}
			if retry {
				config.Retry = middleware.Retry{MaxRetries: 2}.Middleware
			}
			if err := watermillobs.Instrument(router, config, opts...); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			router.AddConsumerHandler("charge", "orders", pubSub, func(msg *message.Message) error {
				mu.Lock()
				defer mu.Unlock()
				handlerSaw = append(handlerSaw, watermillobs.Attempts(msg.Context()))
				if len(handlerSaw) < 3 {
					return errAttempt
				}
				close(done)
				return nil
			})
			testsvc.RunRouter(t, router)
			in := message.NewMessage("in-1", []byte(`{}`))
			in.Metadata.Set(contract.NameKey, "ChargeCard")
			if err := pubSub.Publish("orders", in); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the message was not handled")
			}
			if err := router.Close(); err != nil {
				t.Fatal(err)
			}

			mu.Lock()
			defer mu.Unlock()
			process := 0
			for _, s := range rec.Ended() {
				if s.Name() == "process orders" {
					process++
				}
			}
			want := struct {
				handler, backend string
				spans            int
			}{"[1 2 3]", "[3]", 1}
			if !retry {
				// Three deliveries by GoChannel, nothing counted.
				want.handler, want.backend, want.spans = "[0 0 0]", "[0 0 0]", 3
			}
			if fmt.Sprint(handlerSaw) != want.handler || fmt.Sprint(backendSaw) != want.backend {
				t.Errorf("handler saw Attempts %v, backend %v; want %s and %s", handlerSaw, backendSaw, want.handler, want.backend)
			}
			if process != want.spans {
				t.Errorf("%d process spans, want %d", process, want.spans)
			}
			if len(consumed) != 3 {
				t.Errorf("consume hooks ran %d times, want 3, once per attempt", len(consumed))
			}
		})
	}
}

// backendFunc is a Backend made of a middleware.
type backendFunc message.HandlerMiddleware

func (b backendFunc) HandlerMiddleware() message.HandlerMiddleware {
	return message.HandlerMiddleware(b)
}
