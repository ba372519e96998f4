package hooks

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// ErrNilHook is returned by [Registry.Register] for a nil hook.
var ErrNilHook = errors.New("hooks: nil hook")

// A Registration is the handle of one registered hook. Its methods are safe
// for concurrent use.
type Registration struct {
	registry *Registry
	hook     Hook
	name     string
	patterns []pattern
	priority int
	types    map[string]struct{}
	pred     func(Operation) bool
	enabled  atomic.Bool
}

// Name returns the name the hook was registered under (see [WithName]).
func (g *Registration) Name() string { return g.name }

// Priority returns the registration's priority (see [WithPriority]).
func (g *Registration) Priority() int { return g.priority }

// Enabled reports whether the hook currently runs.
func (g *Registration) Enabled() bool { return g.enabled.Load() }

// SetEnabled switches the hook on or off. Runs that already started are not
// affected; later runs see the change at once.
func (g *Registration) SetEnabled(on bool) { g.enabled.Store(on) }

// Unregister removes the hook from its registry. Calling it again does
// nothing. Runs that already started finish with the hook.
func (g *Registration) Unregister() { g.registry.remove(g) }

// matches reports whether the registration's patterns accept name.
func (g *Registration) matches(name string) bool {
	for i := range g.patterns {
		if g.patterns[i].match(name) {
			return true
		}
	}
	return false
}

func (g *Registration) matchesPrefix(prefix string) bool {
	for i := range g.patterns {
		if g.patterns[i].matchPrefix(prefix) {
			return true
		}
	}
	return false
}

// accepts applies the per-run filters: message types and the predicate.
func (g *Registration) accepts(op Operation) bool {
	if g.types != nil {
		v, ok := op.Attr(MessageTypeKey)
		if !ok || v.Kind() != slog.KindString {
			return false
		}
		if _, ok := g.types[v.String()]; !ok {
			return false
		}
	}
	if g.pred != nil {
		return g.pred(op)
	}
	return true
}

// MessageTypeKey is the attribute that [WithMessageTypes] filters on.
const MessageTypeKey = "message_type"

// An Option configures a registration made by [Registry.Register].
type Option interface{ apply(*Registration) error }

type optionFunc func(*Registration) error

func (f optionFunc) apply(g *Registration) error { return f(g) }

// WithOperations restricts the hook to operations whose names match at least
// one of the glob patterns (see the package documentation for the syntax).
// If not set, the hook matches every operation, as if "*" were given.
// A malformed pattern makes Register fail with an error wrapping
// [ErrBadPattern].
func WithOperations(patterns ...string) Option {
	return optionFunc(func(g *Registration) error {
		for _, p := range patterns {
			c, err := compilePattern(p)
			if err != nil {
				return err
			}
			g.patterns = append(g.patterns, c)
		}
		return nil
	})
}

// WithPriority places the hook in the pipeline: lower priorities run outside
// higher ones, equal priorities in registration order. If not set, 0 is used.
func WithPriority(priority int) Option {
	return optionFunc(func(g *Registration) error {
		g.priority = priority
		return nil
	})
}

// WithPredicate runs the hook only for operations for which pred returns
// true. pred is called on every matching run, so it must be cheap and safe
// for concurrent use; a panicking predicate counts as false and is logged.
func WithPredicate(pred func(Operation) bool) Option {
	return optionFunc(func(g *Registration) error {
		g.pred = pred
		return nil
	})
}

// WithMessageTypes runs the hook only for operations whose "message_type"
// attribute ([MessageTypeKey]) is one of types. Operations without that
// attribute are skipped.
func WithMessageTypes(types ...string) Option {
	return optionFunc(func(g *Registration) error {
		if g.types == nil {
			g.types = make(map[string]struct{}, len(types))
		}
		for _, t := range types {
			g.types[t] = struct{}{}
		}
		return nil
	})
}

// WithEnabled sets whether the hook runs from the start. If not set, it does.
func WithEnabled(enabled bool) Option {
	return optionFunc(func(g *Registration) error {
		g.enabled.Store(enabled)
		return nil
	})
}

// WithName names the hook in errors and logs. If not set, the hook's Go type
// is used.
func WithName(name string) Option {
	return optionFunc(func(g *Registration) error {
		g.name = name
		return nil
	})
}

func newRegistration(r *Registry, h Hook, opts []Option) (*Registration, error) {
	if h == nil {
		return nil, ErrNilHook
	}
	g := &Registration{registry: r, hook: h}
	g.enabled.Store(true)
	var errs []error
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.apply(g); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("hooks: cannot register hook: %w", err)
	}
	if len(g.patterns) == 0 {
		all, _ := compilePattern("*")
		g.patterns = []pattern{all}
	}
	if g.name == "" {
		g.name = fmt.Sprintf("%T", h)
	}
	return g, nil
}
