package hooks

import (
	"context"
	"log/slog"
	"sync/atomic"
)

type ctxKey int

const (
	registryKey ctxKey = iota
	correlationKey
)

var defaultRegistry atomic.Pointer[Registry]

func init() { defaultRegistry.Store(NewRegistry()) }

// Default returns the process-wide registry that [FromContext] falls back to.
func Default() *Registry { return defaultRegistry.Load() }

// SetDefault replaces the process-wide registry. A nil registry is ignored.
func SetDefault(r *Registry) {
	if r != nil {
		defaultRegistry.Store(r)
	}
}

// WithRegistry returns a context that carries r. Code that runs with the
// context uses r instead of the default registry, which lets tests and
// multi-tenant programs keep separate hook sets.
func WithRegistry(ctx context.Context, r *Registry) context.Context {
	return context.WithValue(ctx, registryKey, r)
}

// FromContext returns the registry carried by ctx, or [Default] if there is
// none.
func FromContext(ctx context.Context) *Registry {
	if r, ok := ctx.Value(registryKey).(*Registry); ok && r != nil {
		return r
	}
	return Default()
}

// Run runs fn through the hooks of the registry that ctx carries (see
// [FromContext] and [Registry.Run]).
func Run(ctx context.Context, name string, attrs []slog.Attr, fn func(context.Context) error) error {
	return FromContext(ctx).Run(ctx, name, attrs, fn)
}

// Notify reports an operation to the hooks of the registry that ctx carries
// (see [FromContext] and [Registry.Notify]).
func Notify(ctx context.Context, name string, attrs []slog.Attr) {
	FromContext(ctx).Notify(ctx, name, attrs)
}
