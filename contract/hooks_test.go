package contract_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

func registry(h hooks.HookFunc) *hooks.Registry {
	reg := hooks.NewRegistry()
	reg.MustRegister(h)
	return reg
}

func TestRunHooks_hook_panic_runs_fn_once(t *testing.T) {
	errFn := errors.New("fn failed")
	for _, when := range []string{"before next", "after next"} {
		t.Run(when, func(t *testing.T) {
			reg := registry(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				if when == "before next" {
					panic("bug")
				}
				_ = next(ctx)
				panic("bug")
			})
			calls, reports := 0, 0
			err := contract.RunHooks(context.Background(), reg, "op", nil, func(context.Context) error {
				calls++
				return errFn
			}, func(ctx context.Context, e *hooks.HookPanicError) { reports++ })
			if calls != 1 || reports != 1 || !errors.Is(err, errFn) {
				t.Errorf("calls=%d reports=%d err=%v, want fn once, one report and fn's error", calls, reports, err)
			}
		})
	}
}

func TestRunHooks_hook_error_is_returned(t *testing.T) {
	refused := errors.New("rate limited")
	reg := registry(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return refused })
	calls := 0
	err := contract.RunHooks(context.Background(), reg, "op", nil, func(context.Context) error { calls++; return nil }, nil)
	if !errors.Is(err, refused) || calls != 0 {
		t.Errorf("err=%v calls=%d, want the refusal and no call", err, calls)
	}
}

func TestRunHooks_fn_panic_reaches_the_caller(t *testing.T) {
	reg := registry(func(ctx context.Context, op hooks.Operation, next hooks.Next) error { return next(ctx) })
	calls := 0
	defer func() {
		if v := recover(); v != "fn bug" || calls != 1 {
			t.Errorf("recovered %v after %d calls, want fn's own panic after one call", v, calls)
		}
	}()
	_ = contract.RunHooks(context.Background(), reg, "op", nil, func(context.Context) error {
		calls++
		panic("fn bug")
	}, nil)
}
