package hooks

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"github.com/cqrs-ddd/watermill-observability/internal/uuidtext"
)

// NewCorrelationID returns a random (version 4) UUID in its canonical
// 36-character form. The bits come from math/rand/v2's ChaCha8 generator,
// seeded by the runtime from the operating system: unpredictable enough for
// an identifier, several times cheaper than crypto/rand, and without
// linking the crypto packages into every program. Do not use it as a
// secret.
func NewCorrelationID() string {
	var u [16]byte
	binary.LittleEndian.PutUint64(u[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(u[8:], rand.Uint64())
	return uuidtext.Format(u, 4)
}

// The two IDs share one context node, which holds them itself: handing
// both to a handler costs one allocation, where context.WithValue would
// take two (the node and the boxed value).
type varsCtx struct {
	context.Context
	vars Vars
}

// Value returns the node's IDs for correlationKey and asks the parent
// otherwise.
func (c *varsCtx) Value(key any) any {
	if key == correlationKey {
		return &c.vars
	}
	return c.Context.Value(key)
}

// String names the node for context's own String output.
func (c *varsCtx) String() string {
	return fmt.Sprintf("%v.WithCorrelation(%q, %q)", c.Context, c.vars.CorrelationID, c.vars.CausationID)
}

func vars(ctx context.Context) Vars {
	if v, ok := ctx.Value(correlationKey).(*Vars); ok {
		return *v
	}
	return Vars{}
}

func withVars(ctx context.Context, v Vars) context.Context {
	return &varsCtx{Context: ctx, vars: v}
}

// WithCorrelationID returns a context carrying the correlation ID: the ID
// shared by every message and operation of one conversation (one request,
// one order, ...).
func WithCorrelationID(ctx context.Context, id string) context.Context {
	v := vars(ctx)
	v.CorrelationID = id
	return withVars(ctx, v)
}

// CorrelationID returns the correlation ID carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	return vars(ctx).CorrelationID
}

// WithCausationID returns a context carrying the causation ID: the ID of the
// message whose handling caused the current work.
func WithCausationID(ctx context.Context, id string) context.Context {
	v := vars(ctx)
	v.CausationID = id
	return withVars(ctx, v)
}

// CausationID returns the causation ID carried by ctx, or "".
func CausationID(ctx context.Context) string {
	return vars(ctx).CausationID
}

// Vars is a snapshot of the correlation values of a context, for handing them
// to work that starts from another context, such as a new goroutine with
// context.Background().
type Vars struct {
	CorrelationID string
	CausationID   string
}

// Snapshot captures the correlation and causation IDs carried by ctx.
func Snapshot(ctx context.Context) Vars {
	return vars(ctx)
}

// Restore returns a context carrying the IDs of v. Empty IDs are left as ctx
// has them. Setting both costs one context value.
func Restore(ctx context.Context, v Vars) context.Context {
	cur := vars(ctx)
	if v.CorrelationID == "" {
		v.CorrelationID = cur.CorrelationID
	}
	if v.CausationID == "" {
		v.CausationID = cur.CausationID
	}
	if v == cur {
		return ctx
	}
	return withVars(ctx, v)
}
