package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// ErrOperationPanicked is what next returns to hooks when the operation
// itself panicked. After the hooks return, Run re-raises the original panic,
// so the caller sees exactly what it would have seen without hooks.
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
	regs    []*Registration
	op      Operation
	fn      func(context.Context) error
	opPanic *recovered
	// Inline room for the common case, so that a run costs one allocation
	// for the pipeline plus one per hook for its next function.
	regBuf  [2]*Registration
	attrBuf [4]slog.Attr
}

// run runs the pipeline and re-raises a panic of the operation.
func (p *pipeline) run(ctx context.Context) error {
	err := p.call(ctx, 0)
	if p.opPanic != nil {
		panic(p.opPanic.value)
	}
	return err
}

type recovered struct{ value any }

func (p *pipeline) call(ctx context.Context, i int) (err error) {
	if i == len(p.regs) {
		return p.runOperation(ctx)
	}
	g := p.regs[i]
	defer func() {
		if v := recover(); v != nil {
			err = &HookPanicError{Hook: g.name, Operation: p.op.Name, Value: v, Stack: debug.Stack()}
		}
	}()
	return g.hook.Around(ctx, p.op, func(ctx context.Context) error {
		return p.call(ctx, i+1)
	})
}

// runOperation calls the operation, turning its panic into an error for the
// hooks while remembering the value for Run to re-raise.
func (p *pipeline) runOperation(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if p.opPanic == nil {
				p.opPanic = &recovered{value: v}
			}
			err = ErrOperationPanicked
		}
	}()
	return p.fn(ctx)
}
