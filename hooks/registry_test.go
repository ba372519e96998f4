package hooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// recorder returns a hook that appends "before <tag>" and "after <tag>" to
// log around the rest of the pipeline.
func recorder(mu *sync.Mutex, log *[]string, tag string) hooks.Hook {
	return hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		mu.Lock()
		*log = append(*log, "before "+tag)
		mu.Unlock()
		err := next(ctx)
		mu.Lock()
		*log = append(*log, "after "+tag)
		mu.Unlock()
		return err
	})
}

func mustRegister(t *testing.T, r *hooks.Registry, h hooks.Hook, opts ...hooks.Option) *hooks.Registration {
	t.Helper()
	g, err := r.Register(h, opts...)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return g
}

func TestRun_priority_order(t *testing.T) {
	r := hooks.NewRegistry()
	var mu sync.Mutex
	var log []string
	mustRegister(t, r, recorder(&mu, &log, "p10"), hooks.WithPriority(10))
	mustRegister(t, r, recorder(&mu, &log, "p0-first"))
	mustRegister(t, r, recorder(&mu, &log, "p-5"), hooks.WithPriority(-5))
	mustRegister(t, r, recorder(&mu, &log, "p0-second"))

	err := r.Run(context.Background(), "uow.commit", nil, func(context.Context) error {
		log = append(log, "operation")
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{
		"before p-5", "before p0-first", "before p0-second", "before p10",
		"operation",
		"after p10", "after p0-second", "after p0-first", "after p-5",
	}
	if !slices.Equal(log, want) {
		t.Errorf("pipeline order\n got %q\nwant %q", log, want)
	}
}

func TestRun_no_match_calls_operation_directly(t *testing.T) {
	r := hooks.NewRegistry()
	called := false
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		called = true
		return next(ctx)
	}), hooks.WithOperations("saga.*"))

	ran := false
	if err := r.Run(context.Background(), "uow.commit", nil, func(context.Context) error { ran = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if !ran || called {
		t.Errorf("operation ran = %v, hook called = %v; want true, false", ran, called)
	}
}

func TestRun_hook_sees_name_attrs_and_context(t *testing.T) {
	r := hooks.NewRegistry()
	type key struct{}
	var got hooks.Operation
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		got = op
		return next(context.WithValue(ctx, key{}, "from hook"))
	}))
	attrs := []slog.Attr{slog.String("topic", "orders"), slog.Int("n", 3)}
	var seen any
	err := r.Run(context.Background(), "publisher.publish.orders", attrs, func(ctx context.Context) error {
		seen = ctx.Value(key{})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	attrs[0] = slog.String("topic", "changed by caller after Run")
	if got.Name != "publisher.publish.orders" {
		t.Errorf("op.Name = %q", got.Name)
	}
	if v, ok := got.Attr("topic"); !ok || v.String() != "orders" {
		t.Errorf("op.Attr(topic) = %v, %v; want orders (Run must copy attrs)", v, ok)
	}
	if seen != "from hook" {
		t.Errorf("operation saw context value %v, want the one the hook passed to next", seen)
	}
}

func TestRegister_patterns(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		match    []string
		noMatch  []string
	}{
		{"star matches everything", []string{"*"}, []string{"uow.commit", "a", ""}, nil},
		{"family", []string{"event.*"}, []string{"event.dispatch.OrderPlaced", "event.handler.A.B", "event."}, []string{"events.x", "xevent.a", "event"}},
		{"suffix", []string{"*.commit"}, []string{"uow.commit", "outbox.tx.commit"}, []string{"uow.commit2", "commit", "uow.rollback"}},
		{"two suffixes", []string{"*.commit", "*.rollback"}, []string{"uow.commit", "uow.rollback"}, []string{"uow.begin"}},
		{"class", []string{"redis.lock.[ar]*"}, []string{"redis.lock.acquire.order", "redis.lock.release.order"}, []string{"redis.lock.extend.order"}},
		{"negated class", []string{"lock.[!a]*"}, []string{"lock.release"}, []string{"lock.acquire"}},
		{"caret negation", []string{"lock.[^a]*"}, []string{"lock.release"}, []string{"lock.acquire"}},
		{"range", []string{"projection.partition.[0-3]"}, []string{"projection.partition.0", "projection.partition.3"}, []string{"projection.partition.4", "projection.partition.10"}},
		{"question mark", []string{"job.?"}, []string{"job.a", "job.é"}, []string{"job.", "job.ab"}},
		{"literal", []string{"outbox.process_batch"}, []string{"outbox.process_batch"}, []string{"outbox.process_batch2", "outbox.process"}},
		{"escaped star", []string{`a.\*`}, []string{"a.*"}, []string{"a.b"}},
		{"inner star", []string{"saga.*.OrderSaga"}, []string{"saga.run.OrderSaga", "saga.recovery.x.OrderSaga"}, []string{"saga.run.Other"}},
		{"empty name only via star", []string{"event.*", "?"}, nil, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := hooks.NewRegistry()
			var calls atomic.Int32
			mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				calls.Add(1)
				return next(ctx)
			}), hooks.WithOperations(tt.patterns...))
			for _, name := range tt.match {
				calls.Store(0)
				_ = r.Run(context.Background(), name, nil, func(context.Context) error { return nil })
				if calls.Load() != 1 || !r.Enabled(name) {
					t.Errorf("%q should match %q (hook calls %d, Enabled %v)", name, tt.patterns, calls.Load(), r.Enabled(name))
				}
			}
			for _, name := range tt.noMatch {
				calls.Store(0)
				_ = r.Run(context.Background(), name, nil, func(context.Context) error { return nil })
				if calls.Load() != 0 || r.Enabled(name) {
					t.Errorf("%q should not match %q (hook calls %d, Enabled %v)", name, tt.patterns, calls.Load(), r.Enabled(name))
				}
			}
		})
	}
}

func TestRegister_invalid_input(t *testing.T) {
	r := hooks.NewRegistry()
	pass := hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) })
	for _, p := range []string{"event.[abc", `event.\`, "a[]", "a[-z]", "a[z-]", "[", "x[^]"} {
		_, err := r.Register(pass, hooks.WithOperations("ok.*", p))
		if !errors.Is(err, hooks.ErrBadPattern) {
			t.Errorf("Register(%q) error = %v, want ErrBadPattern", p, err)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", p)) {
			t.Errorf("error %q does not name the pattern %q", err, p)
		}
	}
	if _, err := r.Register(nil); !errors.Is(err, hooks.ErrNilHook) {
		t.Errorf("Register(nil) error = %v, want ErrNilHook", err)
	}
	if n := len(r.Registrations()); n != 0 {
		t.Errorf("failed registrations left %d hooks behind", n)
	}
}

func TestRegister_predicate(t *testing.T) {
	r := hooks.NewRegistry()
	var seen []string
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		seen = append(seen, op.Name)
		return next(ctx)
	}), hooks.WithPredicate(func(op hooks.Operation) bool {
		v, ok := op.Attr("duration_ms")
		return ok && v.Int64() > 100
	}))
	noop := func(context.Context) error { return nil }
	_ = r.Run(context.Background(), "slow", []slog.Attr{slog.Int64("duration_ms", 250)}, noop)
	_ = r.Run(context.Background(), "fast", []slog.Attr{slog.Int64("duration_ms", 5)}, noop)
	_ = r.Run(context.Background(), "none", nil, noop)
	if !slices.Equal(seen, []string{"slow"}) {
		t.Errorf("hook ran for %q, want only [slow]", seen)
	}
}

func TestRegister_predicate_panic_is_a_mismatch(t *testing.T) {
	var buf bytes.Buffer
	r := hooks.NewRegistry(hooks.WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		t.Error("hook ran although its predicate panicked")
		return next(ctx)
	}), hooks.WithPredicate(func(hooks.Operation) bool { panic("bad predicate") }), hooks.WithName("audit"))
	ran := false
	if err := r.Run(context.Background(), "x", nil, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Run = %v, ran = %v; want nil, true", err, ran)
	}
	if !strings.Contains(buf.String(), "bad predicate") || !strings.Contains(buf.String(), `"hook":"audit"`) {
		t.Errorf("predicate panic not logged with the hook name: %s", buf.String())
	}
}

func TestRegister_message_types(t *testing.T) {
	r := hooks.NewRegistry()
	var seen []string
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		v, _ := op.Attr(hooks.MessageTypeKey)
		seen = append(seen, v.String())
		return next(ctx)
	}), hooks.WithMessageTypes("OrderCreated", "OrderShipped"), hooks.WithOperations("event.*"))
	noop := func(context.Context) error { return nil }
	for _, typ := range []string{"OrderCreated", "OrderCancelled", "OrderShipped"} {
		_ = r.Run(context.Background(), "event.dispatch."+typ, []slog.Attr{slog.String("message_type", typ)}, noop)
	}
	_ = r.Run(context.Background(), "event.dispatch.Untyped", nil, noop)
	_ = r.Run(context.Background(), "event.dispatch.Int", []slog.Attr{slog.Int("message_type", 1)}, noop)
	if !slices.Equal(seen, []string{"OrderCreated", "OrderShipped"}) {
		t.Errorf("hook ran for %q, want [OrderCreated OrderShipped]", seen)
	}
}

func TestRegistration_SetEnabled_concurrent(t *testing.T) {
	r := hooks.NewRegistry()
	var calls atomic.Int64
	g := mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		calls.Add(1)
		return next(ctx)
	}), hooks.WithOperations("event.*"), hooks.WithEnabled(false))
	if r.Enabled("event.dispatch.A") {
		t.Fatal("Enabled = true for a registration made with WithEnabled(false)")
	}

	var ops atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = r.Run(context.Background(), "event.dispatch.A", nil, func(context.Context) error { ops.Add(1); return nil })
			}
		})
	}
	for i := range 200 {
		g.SetEnabled(i%2 == 0)
		time.Sleep(50 * time.Microsecond)
	}
	g.SetEnabled(false)
	close(stop)
	wg.Wait()
	if calls.Load() == 0 || calls.Load() >= ops.Load() {
		t.Errorf("hook ran %d times for %d operations; want some but not all", calls.Load(), ops.Load())
	}

	before := calls.Load()
	for range 100 {
		_ = r.Run(context.Background(), "event.dispatch.A", nil, func(context.Context) error { return nil })
	}
	if calls.Load() != before {
		t.Errorf("disabled hook ran %d more times", calls.Load()-before)
	}
	g.SetEnabled(true)
	_ = r.Run(context.Background(), "event.dispatch.A", nil, func(context.Context) error { return nil })
	if calls.Load() != before+1 || !g.Enabled() {
		t.Errorf("re-enabled hook did not run")
	}
}

func TestRegistration_Unregister(t *testing.T) {
	r := hooks.NewRegistry()
	var mu sync.Mutex
	var log []string
	a := mustRegister(t, r, recorder(&mu, &log, "a"))
	mustRegister(t, r, recorder(&mu, &log, "b"))
	noop := func(context.Context) error { return nil }
	_ = r.Run(context.Background(), "x", nil, noop)
	a.Unregister()
	a.Unregister() // second call is a no-op
	_ = r.Run(context.Background(), "x", nil, noop)
	want := []string{"before a", "before b", "after b", "after a", "before b", "after b"}
	if !slices.Equal(log, want) {
		t.Errorf("got %q, want %q", log, want)
	}
	if n := len(r.Registrations()); n != 1 {
		t.Errorf("%d registrations left, want 1", n)
	}
}

func TestRun_error_propagation(t *testing.T) {
	errRefused := errors.New("rate limit exceeded")
	errOp := errors.New("commit failed")
	t.Run("hook refuses", func(t *testing.T) {
		r := hooks.NewRegistry()
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			return errRefused
		}), hooks.WithOperations("publisher.publish.*"))
		ran := false
		err := r.Run(context.Background(), "publisher.publish.orders", nil, func(context.Context) error { ran = true; return nil })
		if !errors.Is(err, errRefused) || ran {
			t.Errorf("Run = %v, operation ran = %v; want refusal and no run", err, ran)
		}
	})
	t.Run("operation error reaches hooks and caller", func(t *testing.T) {
		r := hooks.NewRegistry()
		var hookSaw error
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			hookSaw = next(ctx)
			return hookSaw
		}))
		err := r.Run(context.Background(), "uow.commit", nil, func(context.Context) error { return errOp })
		if !errors.Is(err, errOp) || !errors.Is(hookSaw, errOp) {
			t.Errorf("Run = %v, hook saw %v; want %v for both", err, hookSaw, errOp)
		}
	})
}

func TestRun_hook_panic_is_recovered(t *testing.T) {
	r := hooks.NewRegistry()
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return next(ctx)
	}), hooks.WithName("outer"))
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		panic("boom")
	}), hooks.WithName("broken-audit"), hooks.WithPriority(5))

	err := r.Run(context.Background(), "uow.commit", nil, func(context.Context) error { return nil })
	var pe *hooks.HookPanicError
	if !errors.As(err, &pe) {
		t.Fatalf("Run = %v, want *HookPanicError", err)
	}
	if pe.Hook != "broken-audit" || pe.Operation != "uow.commit" || pe.Value != "boom" || len(pe.Stack) == 0 {
		t.Errorf("HookPanicError = %+v", pe)
	}
	if !strings.Contains(err.Error(), "broken-audit") || !strings.Contains(err.Error(), "uow.commit") {
		t.Errorf("error %q does not name hook and operation", err)
	}
}

func TestRun_operation_panic_is_reraised(t *testing.T) {
	r := hooks.NewRegistry()
	var hookSaw error
	hookReturned := false
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		hookSaw = next(ctx)
		hookReturned = true
		return nil // even a hook that swallows the error cannot hide the panic
	}))
	defer func() {
		v := recover()
		if v != "operation exploded" {
			t.Errorf("recovered %v, want the operation's own panic value", v)
		}
		if hookReturned || hookSaw != nil {
			t.Errorf("next returned %v to the hook; want the panic to unwind through it", hookSaw)
		}
	}()
	_ = r.Run(context.Background(), "uow.commit", nil, func(context.Context) error { panic("operation exploded") })
	t.Error("Run returned instead of re-raising the panic")
}

// operationThatPanics is a named function so that its frame can be found in
// a stack trace.
func operationThatPanics(context.Context) error { panic("operation exploded") }

// A recoverer above Run (Watermill's Recoverer, Sentry) takes debug.Stack()
// where it recovers: that stack must still show the operation's frame, not
// only the pipeline's, and the hook's deferred observer must see the panic.
func TestRun_operation_panic_keeps_its_stack(t *testing.T) {
	r := hooks.NewRegistry()
	observed := false
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		returned := false
		defer func() {
			if !returned {
				observed = true
			}
		}()
		err := next(ctx)
		returned = true
		return err
	}), hooks.WithName("observer"))
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return next(ctx)
	}), hooks.WithName("inner"), hooks.WithPriority(5))

	var (
		v     any
		stack string
	)
	func() {
		defer func() {
			v = recover()
			stack = string(debug.Stack())
		}()
		_ = r.Run(context.Background(), "uow.commit", nil, operationThatPanics)
	}()
	if v != "operation exploded" {
		t.Fatalf("recovered %v, want the operation's panic", v)
	}
	if !strings.Contains(stack, "hooks_test.operationThatPanics") {
		t.Errorf("stack taken where the panic was recovered lacks the operation's frame:\n%s", stack)
	}
	if !observed {
		t.Error("the hook's deferred observer did not see the operation panic")
	}
}

// A hook that recovers the operation's panic and retries gets a normal run
// the second time: a later panic of that hook is again a *HookPanicError.
func TestRun_hook_recovering_operation_panic_then_retrying(t *testing.T) {
	r := hooks.NewRegistry()
	calls := 0
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) (err error) {
		func() {
			defer func() { _ = recover() }()
			_ = next(ctx)
		}()
		if err := next(ctx); err != nil {
			return err
		}
		panic("retry hook broke")
	}), hooks.WithName("retry"))
	err := r.Run(context.Background(), "uow.commit", nil, func(context.Context) error {
		calls++
		if calls == 1 {
			panic("first try")
		}
		return nil
	})
	var pe *hooks.HookPanicError
	if !errors.As(err, &pe) || pe.Value != "retry hook broke" {
		t.Fatalf("Run = %v, want *HookPanicError of the retry hook", err)
	}
	if calls != 2 {
		t.Errorf("operation ran %d times, want 2", calls)
	}
}

func TestNotify(t *testing.T) {
	t.Run("does not block and logs the error", func(t *testing.T) {
		var buf syncBuffer
		r := hooks.NewRegistry(hooks.WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
		release := make(chan struct{})
		started := make(chan struct{})
		type key struct{}
		var (
			hookCtxErr   error
			hookCtxDone  bool
			hookCtxValue any
		)
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			close(started)
			<-release
			// Looked at after the caller cancelled its context.
			hookCtxErr = ctx.Err()
			hookCtxValue = ctx.Value(key{})
			select {
			case <-ctx.Done():
				hookCtxDone = true
			default:
			}
			if err := next(ctx); err != nil {
				return err
			}
			return errors.New("audit store down")
		}), hooks.WithOperations("message_registry.*"))

		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
		done := make(chan struct{})
		go func() {
			r.Notify(ctx, "message_registry.register", []slog.Attr{slog.String("name", "OrderPlaced")})
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Notify blocked while its hook was blocked")
		}
		cancel() // the caller's cancellation must not reach the background hook
		<-started
		close(release)
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if hookCtxErr != nil || hookCtxDone {
			t.Errorf("hook's context: Err() = %v, Done closed = %v; want the caller's cancellation not to reach it", hookCtxErr, hookCtxDone)
		}
		if hookCtxValue != "v" {
			t.Errorf("hook's context value = %v, want the caller's values kept", hookCtxValue)
		}
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("log is not one JSON record: %v: %s", err, buf.Bytes())
		}
		if rec["level"] != "ERROR" || rec["operation"] != "message_registry.register" || !strings.Contains(fmt.Sprint(rec["error"]), "audit store down") {
			t.Errorf("log record = %v", rec)
		}
	})
	t.Run("panic logged", func(t *testing.T) {
		var buf syncBuffer
		r := hooks.NewRegistry(hooks.WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			panic("kaput")
		}))
		r.Notify(context.Background(), "conflict.resolve.LastWins", nil)
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "kaput") || !strings.Contains(buf.String(), "conflict.resolve.LastWins") {
			t.Errorf("panic not logged: %s", buf.String())
		}
	})
	t.Run("panicking log handler is recovered", func(t *testing.T) {
		r := hooks.NewRegistry(hooks.WithLogger(slog.New(panicHandler{})))
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			_ = next(ctx)
			return errors.New("audit store down")
		}))
		// Before the fix this crashed the test binary.
		r.Notify(context.Background(), "conflict.resolve.LastWins", nil)
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("drops past the limit", func(t *testing.T) {
		var buf syncBuffer
		r := hooks.NewRegistry(hooks.WithNotifyLimit(2), hooks.WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
		release := make(chan struct{})
		var ran atomic.Int32
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			ran.Add(1)
			<-release
			return next(ctx)
		}))
		for range 5 {
			r.Notify(context.Background(), "x", nil)
		}
		close(release)
		if err := r.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ran.Load() != 2 || r.DroppedNotifications() != 3 {
			t.Errorf("ran %d, dropped %d; want 2, 3", ran.Load(), r.DroppedNotifications())
		}
		if !strings.Contains(buf.String(), "dropped") {
			t.Errorf("drop not logged: %s", buf.String())
		}
	})
	t.Run("flush honours its context", func(t *testing.T) {
		r := hooks.NewRegistry()
		release := make(chan struct{})
		defer close(release)
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			<-release
			return nil
		}))
		r.Notify(context.Background(), "x", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if err := r.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Flush = %v, want DeadlineExceeded", err)
		}
	})
}

func TestEnabledPrefix(t *testing.T) {
	r := hooks.NewRegistry()
	g := mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) }),
		hooks.WithOperations("publisher.publish.*", "*.commit", "saga.[rt]un.*"))
	for prefix, want := range map[string]bool{
		"publisher.publish.": true,
		"publisher.":         true,
		"consumer.consume.":  true, // "*.commit" can still match
		"saga.run.":          true,
		"saga.sun.":          true, // "*.commit" still could
	} {
		if got := r.EnabledPrefix(prefix); got != want {
			t.Errorf("EnabledPrefix(%q) = %v, want %v", prefix, got, want)
		}
	}
	g.Unregister()
	mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) }),
		hooks.WithOperations("publisher.publish.*", "saga.[rt]un.*"))
	for prefix, want := range map[string]bool{
		"publisher.publish.": true,
		"publisher.pub":      true,
		"consumer.consume.":  false,
		"saga.tun.X":         true,
		"saga.sun.":          false,
		"":                   true,
	} {
		if got := r.EnabledPrefix(prefix); got != want {
			t.Errorf("EnabledPrefix(%q) = %v, want %v", prefix, got, want)
		}
	}
}

func TestEnabledPrefixBesides(t *testing.T) {
	r := hooks.NewRegistry()
	pass := func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) }
	span := &passHook{}
	isSpan := func(h hooks.Hook) bool { return h == span }
	if r.EnabledPrefixBesides("consumer.consume.", isSpan) {
		t.Error("an empty registry reports a hook")
	}
	mustRegister(t, r, span, hooks.WithOperations("consumer.consume.*", "publisher.publish.*"))
	if !r.EnabledPrefix("consumer.consume.") {
		t.Fatal("EnabledPrefix does not see the span hook")
	}
	if r.EnabledPrefixBesides("consumer.consume.", isSpan) {
		t.Error("the hook left out is reported")
	}
	if !r.EnabledPrefixBesides("consumer.consume.", func(hooks.Hook) bool { return false }) {
		t.Error("a hook that is not left out is not reported")
	}
	audit := mustRegister(t, r, hooks.HookFunc(pass), hooks.WithName("audit"), hooks.WithOperations("consumer.*"))
	if !r.EnabledPrefixBesides("consumer.consume.", isSpan) {
		t.Error("a second hook for the family is not reported")
	}
	if r.EnabledPrefixBesides("publisher.publish.", isSpan) {
		t.Error("a hook of another family is reported")
	}
	audit.SetEnabled(false)
	if r.EnabledPrefixBesides("consumer.consume.", isSpan) {
		t.Error("a disabled hook is reported")
	}
	audit.SetEnabled(true)
	audit.Unregister()
	if r.EnabledPrefixBesides("consumer.consume.", isSpan) {
		t.Error("an unregistered hook is reported")
	}
}

// passHook passes every operation through; its pointer tells it apart.
type passHook struct{ _ byte }

func (*passHook) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	return next(ctx)
}

func TestRegistry_context_and_default(t *testing.T) {
	local := hooks.NewRegistry()
	var localCalls, defaultCalls atomic.Int32
	mustRegister(t, local, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		localCalls.Add(1)
		return next(ctx)
	}))
	def := hooks.NewRegistry()
	mustRegister(t, def, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		defaultCalls.Add(1)
		return next(ctx)
	}))
	old := hooks.Default()
	hooks.SetDefault(def)
	t.Cleanup(func() { hooks.SetDefault(old) })
	hooks.SetDefault(nil) // ignored

	noop := func(context.Context) error { return nil }
	if hooks.FromContext(context.Background()) != def {
		t.Fatal("FromContext without a registry did not return the default")
	}
	_ = hooks.Run(context.Background(), "x", nil, noop)
	ctx := hooks.WithRegistry(context.Background(), local)
	if hooks.FromContext(ctx) != local {
		t.Fatal("FromContext did not return the context's registry")
	}
	_ = hooks.Run(ctx, "x", nil, noop)
	hooks.Notify(ctx, "y", nil)
	if err := local.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if localCalls.Load() != 2 || defaultCalls.Load() != 1 {
		t.Errorf("local ran %d, default ran %d; want 2, 1", localCalls.Load(), defaultCalls.Load())
	}
}

func TestMulti(t *testing.T) {
	var mu sync.Mutex
	var log []string
	hs := []hooks.Hook{recorder(&mu, &log, "a"), nil, recorder(&mu, &log, "b")}
	m := hooks.Multi(hs...)
	hs[0] = recorder(&mu, &log, "changed")
	r := hooks.NewRegistry()
	mustRegister(t, r, m)
	_ = r.Run(context.Background(), "x", nil, func(context.Context) error { log = append(log, "op"); return nil })
	want := []string{"before a", "before b", "op", "after b", "after a"}
	if !slices.Equal(log, want) {
		t.Errorf("got %q, want %q", log, want)
	}
}

func TestAllocs_run_with_no_match(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r := hooks.NewRegistry()
	for i := range 50 {
		mustRegister(t, r, hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) }),
			hooks.WithOperations(fmt.Sprintf("family%d.*", i)))
	}
	ctx := context.Background()
	topic := "orders"
	work := func(context.Context) error { return nil }
	allocs := testing.AllocsPerRun(1000, func() {
		if r.EnabledPrefix("publisher.publish.") {
			_ = r.Run(ctx, "publisher.publish."+topic, []slog.Attr{slog.String("topic", topic)}, work)
			return
		}
		_ = work(ctx)
		_ = r.Run(ctx, "uow.commit", []slog.Attr{slog.String("topic", topic)}, work)
	})
	if allocs != 0 {
		t.Errorf("no-match path allocates %v times per run, want 0", allocs)
	}
}

func TestNewCorrelationID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := hooks.NewCorrelationID()
		if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("%q is not a canonical version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("duplicate ID %q", id)
		}
		seen[id] = true
	}
}

func TestCorrelation_snapshot_restore_across_goroutines(t *testing.T) {
	ctx := hooks.WithCorrelationID(context.Background(), "corr-1")
	ctx = hooks.WithCausationID(ctx, "msg-7")
	if hooks.CorrelationID(ctx) != "corr-1" || hooks.CausationID(ctx) != "msg-7" {
		t.Fatal("IDs not carried by the context")
	}
	if hooks.CorrelationID(context.Background()) != "" || hooks.CausationID(context.Background()) != "" {
		t.Fatal("empty context reports IDs")
	}
	vars := hooks.Snapshot(ctx)
	got := make(chan hooks.Vars)
	go func() {
		bg := hooks.Restore(context.Background(), vars)
		got <- hooks.Snapshot(bg)
	}()
	if v := <-got; v != (hooks.Vars{CorrelationID: "corr-1", CausationID: "msg-7"}) {
		t.Errorf("restored %+v", v)
	}
	keep := hooks.Restore(ctx, hooks.Vars{})
	if hooks.CorrelationID(keep) != "corr-1" {
		t.Error("restoring empty vars dropped the existing correlation ID")
	}
}

func TestAllocs_restore_one_allocation_and_a_transparent_context(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "outer"))
	v := hooks.Vars{CorrelationID: "corr-1", CausationID: "msg-7"}
	if n := testing.AllocsPerRun(100, func() { _ = hooks.Restore(parent, v) }); n != 1 && !raceEnabled {
		t.Errorf("Restore allocates %v times, want 1", n)
	}
	ctx := hooks.Restore(parent, v)
	if ctx.Value(key{}) != "outer" {
		t.Error("values of the parent context are hidden")
	}
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(time.Second):
		t.Fatal("cancelling the parent did not reach a context derived from the restored one")
	}
	if !errors.Is(child.Err(), context.Canceled) {
		t.Errorf("child error %v", child.Err())
	}
	if s := fmt.Sprint(ctx); !strings.Contains(s, "corr-1") || !strings.Contains(s, "WithCancel") {
		t.Errorf("context string %q names neither the IDs nor the parent", s)
	}
}

// syncBuffer is a bytes.Buffer safe for the background logging of Notify.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// panicHandler is a slog handler that panics on every record.
type panicHandler struct{}

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic("broken log handler") }
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h panicHandler) WithGroup(string) slog.Handler           { return h }
