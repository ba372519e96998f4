package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// ErrOperationPanicked was what next returned to hooks when the operation
// itself panicked.
//
// Deprecated: next no longer returns it. A panic of the operation now passes
// through the hooks without being recovered, so that whoever recovers it
// (Watermill's middleware.Recoverer, Sentry, the Go runtime) sees the stack
// of the code that panicked. A hook that wants to see such a panic uses a
// deferred flag (see [Hook]). The variable stays so that code comparing
// against it still compiles; nothing returns it.
var ErrOperationPanicked = errors.New("hooks: operation panicked")

// HookPanicError is returned by Run when a hook panicked. The operation may or
// may not have run, depending on where the hook panicked.
type HookPanicError struct {
	// Hook is the registration's name (see [WithName]).
	Hook string
	// Operation is the name of the operation being run.
	Operation string
	// Value is what the hook panicked with.
	Value any
	// Stack is the stack trace of the panicking goroutine.
	Stack []byte
}

// Error names the hook, the operation and the panic value.
func (e *HookPanicError) Error() string {
	return fmt.Sprintf("hooks: hook %s panicked during operation %q: %v", e.Hook, e.Operation, e.Value)
}

// Unwrap returns Value if it is an error.
func (e *HookPanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// pipeline is one run of an operation through its hooks.
type pipeline struct {
	regs []*Registration
	op   Operation
	fn   func(context.Context) error
	// opPanicking is set while a panic of the operation unwinds through the
	// hooks. The per-hook recover checks it first: calling recover would stop
	// the panic, and whoever recovers it further up would take a stack trace
	// of the pipeline instead of the operation's.
	opPanicking bool
	// Inline room for the common case, so that a run costs one allocation
	// for the pipeline plus one per hook for its next function.
	regBuf  [2]*Registration
	attrBuf [4]slog.Attr
}

// run runs the pipeline. A panic of the operation is not recovered.
func (p *pipeline) run(ctx context.Context) error {
	return p.call(ctx, 0)
}

func (p *pipeline) call(ctx context.Context, i int) (err error) {
	if i == len(p.regs) {
		return p.runOperation(ctx)
	}
	g := p.regs[i]
	defer func() {
		if p.opPanicking {
			return // the operation's panic, not this hook's: let it unwind
		}
		if v := recover(); v != nil {
			err = &HookPanicError{Hook: g.name, Operation: p.op.Name, Value: v, Stack: debug.Stack()}
		}
	}()
	return g.hook.Around(ctx, p.op, func(ctx context.Context) error {
		return p.call(ctx, i+1)
	})
}

// runOperation calls the operation and observes, without recovering, whether
// it panicked (as Watermill's Recoverer does with its own flag).
func (p *pipeline) runOperation(ctx context.Context) error {
	// A hook that recovered an earlier panic and calls next again (a retry)
	// starts a fresh run.
	p.opPanicking = false
	returned := false
	defer func() {
		if !returned {
			p.opPanicking = true
		}
	}()
	err := p.fn(ctx)
	returned = true
	return err
}
