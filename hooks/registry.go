package hooks

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// A Registry holds registered hooks and runs operations through them.
// Its methods are safe for concurrent use. The zero value is not usable; call
// [NewRegistry].
type Registry struct {
	mu    sync.Mutex // serializes Register and Unregister
	state atomic.Pointer[registryState]

	logger      *slog.Logger
	notifyLimit int
	pending     pendingTracker
	dropped     atomic.Uint64
}

// registryState is an immutable snapshot of the registrations, sorted by
// priority, with the match caches that belong to it. Register and Unregister
// replace the whole state, so readers never lock.
type registryState struct {
	regs   []*Registration
	exact  matchCache
	prefix matchCache
}

// A RegistryOption configures a [Registry].
type RegistryOption interface{ applyRegistry(*Registry) }

type registryOptionFunc func(*Registry)

func (f registryOptionFunc) applyRegistry(r *Registry) { f(r) }

// WithLogger sets the logger for errors of background notifications and
// panicking predicates. A nil logger is ignored. If not set, [slog.Default]
// at the time of logging is used.
func WithLogger(l *slog.Logger) RegistryOption {
	return registryOptionFunc(func(r *Registry) {
		if l != nil {
			r.logger = l
		}
	})
}

// WithNotifyLimit caps the number of [Registry.Notify] calls running in the
// background at once; notifications past the cap are dropped, counted (see
// [Registry.DroppedNotifications]) and logged, so a slow hook cannot pile up
// goroutines. Values below 1 are ignored. If not set, 1024 is used.
func WithNotifyLimit(n int) RegistryOption {
	return registryOptionFunc(func(r *Registry) {
		if n > 0 {
			r.notifyLimit = n
		}
	})
}

// NewRegistry returns an empty registry.
func NewRegistry(opts ...RegistryOption) *Registry {
	r := &Registry{notifyLimit: 1024}
	for _, o := range opts {
		if o != nil {
			o.applyRegistry(r)
		}
	}
	r.state.Store(&registryState{})
	return r
}

func (r *Registry) log() *slog.Logger {
	if r.logger != nil {
		return r.logger
	}
	return slog.Default()
}

// Register adds a hook. Options choose the operations it wraps, its place in
// the pipeline and further filters. It fails for a nil hook ([ErrNilHook]) or
// a malformed pattern ([ErrBadPattern]).
func (r *Registry) Register(h Hook, opts ...Option) (*Registration, error) {
	g, err := newRegistration(r, h, opts)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	regs := append(slices.Clone(r.state.Load().regs), g)
	// Stable: equal priorities keep registration order.
	slices.SortStableFunc(regs, func(a, b *Registration) int { return cmp.Compare(a.priority, b.priority) })
	r.state.Store(&registryState{regs: regs})
	return g, nil
}

// MustRegister is like Register but panics on error. It is meant for
// program initialization with constant options.
func (r *Registry) MustRegister(h Hook, opts ...Option) *Registration {
	g, err := r.Register(h, opts...)
	if err != nil {
		panic(err)
	}
	return g
}

func (r *Registry) remove(g *Registration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.state.Load().regs
	i := slices.Index(old, g)
	if i < 0 {
		return
	}
	r.state.Store(&registryState{regs: slices.Delete(slices.Clone(old), i, i+1)})
}

// Registrations returns the current registrations in pipeline order
// (outermost first). The slice is a copy.
func (r *Registry) Registrations() []*Registration {
	return slices.Clone(r.state.Load().regs)
}

// Enabled reports whether any enabled hook's patterns match name, that is,
// whether [Registry.Run] could do more than call the operation. Message-type
// and predicate filters are not evaluated, as they need the attributes.
// It does not allocate once name has been seen, so callers use it to skip
// building attributes:
//
//	if reg.Enabled(name) {
//		return reg.Run(ctx, name, attrs(msg), work)
//	}
//	return work(ctx)
func (r *Registry) Enabled(name string) bool {
	st := r.state.Load()
	if len(st.regs) == 0 {
		return false
	}
	return anyEnabled(st.exact.lookup(st.regs, name, false))
}

// EnabledPrefix reports whether any enabled hook's patterns could match a
// name that starts with prefix. Callers whose operation names are a fixed
// family plus a dynamic part ("publisher.publish." + topic) ask it before
// building the name, so that an unobserved family costs no allocation at all.
func (r *Registry) EnabledPrefix(prefix string) bool {
	st := r.state.Load()
	if len(st.regs) == 0 {
		return false
	}
	return anyEnabled(st.prefix.lookup(st.regs, prefix, true))
}

// EnabledPrefixBesides is [Registry.EnabledPrefix] leaving out the hooks
// for which skip reports true. A caller that knows some hooks would pass
// an operation through unchanged, such as a span hook inside a span that
// already stands for the operation, asks it to skip building the operation
// when nothing else observes the family. skip must be cheap and must not
// call back into the registry: it runs for every matching hook on every
// call.
func (r *Registry) EnabledPrefixBesides(prefix string, skip func(Hook) bool) bool {
	st := r.state.Load()
	if len(st.regs) == 0 {
		return false
	}
	for _, g := range st.prefix.lookup(st.regs, prefix, true).regs {
		if g.enabled.Load() && !skip(g.hook) {
			return true
		}
	}
	return false
}

func anyEnabled(e *cacheEntry) bool {
	for _, g := range e.regs {
		if g.enabled.Load() {
			return true
		}
	}
	return false
}

// Run runs fn inside the hooks registered for name, outermost (lowest
// priority) first, and returns what the pipeline returns. With no matching
// hook it calls fn directly. An empty name is allowed and matches only
// patterns that match the empty string, such as "*".
//
// attrs is not retained after Run returns unless a hook keeps it; Run copies
// it before handing it to hooks. A panic in a hook is returned as a
// [*HookPanicError]. A panic in fn is not recovered: it unwinds through the
// hooks (which may observe it, see [Hook]) to the caller of Run, keeping the
// stack of fn.
func (r *Registry) Run(ctx context.Context, name string, attrs []slog.Attr, fn func(context.Context) error) error {
	st := r.state.Load()
	if len(st.regs) == 0 {
		return fn(ctx)
	}
	e := st.exact.lookup(st.regs, name, false)
	if !anyEnabled(e) {
		return fn(ctx)
	}
	p := r.newPipeline(ctx, e, attrs, fn)
	if p == nil {
		return fn(ctx)
	}
	return p.run(ctx)
}

// newPipeline collects the hooks that pass the per-run filters, or returns
// nil if none does. It copies attrs, so the caller's slice never escapes.
func (r *Registry) newPipeline(ctx context.Context, e *cacheEntry, attrs []slog.Attr, fn func(context.Context) error) *pipeline {
	p := &pipeline{fn: fn}
	p.op.Name = e.name
	if len(attrs) <= len(p.attrBuf) {
		p.op.Attrs = append(p.attrBuf[:0:len(attrs)], attrs...)
	} else {
		p.op.Attrs = slices.Clone(attrs)
	}
	p.regs = p.regBuf[:0]
	for _, g := range e.regs {
		if g.enabled.Load() && r.accepts(ctx, g, p.op) {
			p.regs = append(p.regs, g)
		}
	}
	if len(p.regs) == 0 {
		return nil
	}
	return p
}

// accepts applies the registration's filters; a panicking predicate is
// logged and counts as a mismatch.
func (r *Registry) accepts(ctx context.Context, g *Registration, op Operation) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			r.reportPanic(ctx, "hook predicate panicked",
				v, slog.String("hook", g.name), slog.String("operation", op.Name))
		}
	}()
	return g.accepts(op)
}

// Notify runs the hooks registered for name around an empty operation, in
// the background, and returns at once. Synchronous code uses it to report
// that something happened. The hooks get a context that carries ctx's values
// but not its cancellation. Errors and panics of hooks are logged (a
// panicking log handler is recovered and counted, see
// watermillobs.RecoveredPanics); when more
// notifications are running than the limit (see [WithNotifyLimit]) the
// notification is dropped.
func (r *Registry) Notify(ctx context.Context, name string, attrs []slog.Attr) {
	st := r.state.Load()
	if len(st.regs) == 0 {
		return
	}
	e := st.exact.lookup(st.regs, name, false)
	if !anyEnabled(e) {
		return
	}
	p := r.newPipeline(ctx, e, attrs, func(context.Context) error { return nil })
	if p == nil {
		return
	}
	if !r.pending.add(r.notifyLimit) {
		n := r.dropped.Add(1)
		// Log the first drop and then every 1024th, not every one.
		if n&1023 == 1 {
			r.log().WarnContext(ctx, "hook notification dropped: too many in flight",
				slog.String("operation", e.name), slog.Uint64("dropped_total", n))
		}
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer r.pending.done()
		// Nothing recovers a panic on this goroutine but us: a panicking log
		// handler must not crash the process.
		defer func() {
			if v := recover(); v != nil {
				r.reportPanic(ctx, "hook notification panicked", v, slog.String("operation", e.name))
			}
		}()
		if err := p.run(ctx); err != nil {
			r.log().ErrorContext(ctx, "hook notification failed",
				slog.String("operation", e.name), slog.Any("error", err))
		}
	}()
}

// Flush waits until every notification started by Notify has finished, or
// until ctx is done, in which case it returns ctx's error. Call it at
// shutdown so that no notification is lost.
func (r *Registry) Flush(ctx context.Context) error {
	return r.pending.wait(ctx)
}

// DroppedNotifications returns how many notifications Notify has dropped
// because too many were in flight.
func (r *Registry) DroppedNotifications() uint64 { return r.dropped.Load() }

// pendingTracker counts background notifications and lets Flush wait for
// them. Unlike sync.WaitGroup, add and wait may race freely.
type pendingTracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{}
}

func (t *pendingTracker) add(limit int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n >= limit {
		return false
	}
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	return true
}

func (t *pendingTracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

func (t *pendingTracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reportPanic logs a recovered panic at level Error and counts it with the
// module's other recovered panics; a panic of the log handler itself is
// swallowed.
func (r *Registry) reportPanic(ctx context.Context, msg string, v any, attrs ...slog.Attr) {
	panics.Report(ctx, r.log(), msg, v, attrs...)
}
