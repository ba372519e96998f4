package sagas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// Manager runs registered saga types: it handles their events as steps,
// sends the commands the steps produce, delivers their timeouts and
// repairs what crashed processes left. Its methods are safe for concurrent
// use; run one in every process that handles the sagas.
type Manager struct {
	cfg  Config
	prop *contract.Propagation

	mu    sync.RWMutex
	sagas map[string]*saga
	types []string // sorted

	attempts attemptCounter

	unrouted, droppedTimeouts atomic.Uint64
}

// NewManager returns a Manager configured by cfg.
func NewManager(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sagas: invalid config: %w", err)
	}
	return &Manager{
		cfg:      cfg,
		prop:     contract.NewPropagation(contract.PropagationConfig{Propagator: cfg.Propagator, Logger: cfg.Logger}),
		sagas:    make(map[string]*saga),
		attempts: attemptCounter{n: make(map[string]int)},
	}, nil
}

// saga is a registered definition with its state type erased.
type saga struct {
	typ      string
	bindings []*binding
	// run decodes the state (nil data is the zero state), runs the step
	// and encodes the new state. An error wraps ErrPoison, or is the
	// context's error.
	run func(ctx context.Context, data []byte, in Input) (stepOutput, error)
}

type binding struct {
	EventBinding
	name string // the event type, as the marshaler names it
}

// stepOutput is a Result with the state encoded.
type stepOutput struct {
	state    []byte
	status   string
	commands []any
	schedule []ScheduleTimeout
	cancel   []string
	end      string
}

// Register adds a saga type to m. Register every type before [Manager.AddTo].
func Register[S any](m *Manager, def Definition[S]) error {
	var errs []error
	if def.Type == "" {
		errs = append(errs, errors.New("empty Type"))
	}
	if def.Step == nil {
		errs = append(errs, errors.New("nil Step"))
	}
	if len(def.Events) == 0 {
		errs = append(errs, errors.New("no Events"))
	}
	s := &saga{typ: def.Type}
	starts := false
	for i, e := range def.Events {
		if e.newEvent == nil {
			errs = append(errs, fmt.Errorf("event %d: not built with StartOn or On", i))
			continue
		}
		b := &binding{EventBinding: e, name: m.cfg.Marshaler.Name(e.newEvent())}
		if !e.hasKey {
			errs = append(errs, fmt.Errorf("event %s: nil key func", b.name))
		}
		if slices.ContainsFunc(s.bindings, func(o *binding) bool { return o.name == b.name }) {
			errs = append(errs, fmt.Errorf("event %s bound twice", b.name))
		}
		starts = starts || e.starts
		s.bindings = append(s.bindings, b)
	}
	if len(def.Events) > 0 && !starts {
		errs = append(errs, errors.New("no event starts an instance (use StartOn)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sagas: invalid definition %q: %w", def.Type, err)
	}
	codec := def.Codec
	if codec == nil {
		codec = JSONCodec[S]{}
	}
	s.run = func(ctx context.Context, data []byte, in Input) (out stepOutput, err error) {
		return runStep(ctx, codec, def.Step, data, in)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.sagas[def.Type]; dup {
		return fmt.Errorf("sagas: saga type %q registered twice", def.Type)
	}
	m.sagas[def.Type] = s
	m.types = append(m.types, def.Type)
	slices.Sort(m.types)
	return nil
}

// AddTo adds one handlers group per registered saga type to p, named after
// the type. The group's subscriber therefore gets the saga type as
// EventGroupName (see the package documentation for building a
// watermill-redisstream subscriber whose consumer group is that name), so
// the processes running the same sagas share each saga's events.
func (m *Manager) AddTo(p *cqrs.EventGroupProcessor) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, typ := range m.types {
		s := m.sagas[typ]
		handlers := make([]cqrs.GroupEventHandler, len(s.bindings))
		for i, b := range s.bindings {
			handlers[i] = groupHandler{m: m, s: s, b: b}
		}
		if err := p.AddHandlersGroup(typ, handlers...); err != nil {
			return fmt.Errorf("sagas: cannot add handlers group %s: %w", typ, err)
		}
	}
	return nil
}

// groupHandler is the cqrs handler of one event type of one saga.
type groupHandler struct {
	m *Manager
	s *saga
	b *binding
}

func (h groupHandler) NewEvent() any { return h.b.newEvent() }

func (h groupHandler) Handle(ctx context.Context, event any) error {
	return h.m.handleEvent(ctx, h.s, h.b, event)
}

// saga returns the registered saga type typ.
func (m *Manager) saga(typ string) (*saga, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sagas[typ]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownSagaType, typ)
	}
	return s, nil
}

// registered returns the registered sagas in type order.
func (m *Manager) registered() []*saga {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*saga, len(m.types))
	for i, t := range m.types {
		out[i] = m.sagas[t]
	}
	return out
}

// ActiveSagas calls fn for every registered saga type, in type order, with
// the number of active instances and the start time of the oldest (zero
// when none): the gauges of a metrics collector.
func (m *Manager) ActiveSagas(ctx context.Context, fn func(sagaType string, count int64, oldest time.Time)) error {
	for _, s := range m.registered() {
		n, oldest, err := m.cfg.Store.Active(ctx, s.typ)
		if err != nil {
			return fmt.Errorf("sagas: cannot count active %s instances: %w", s.typ, err)
		}
		fn(s.typ, n, oldest)
	}
	return nil
}

// UnroutedEvents returns how many events were acknowledged without a step
// because their instance did not exist (an On event before its StartOn
// event, or for an unknown key).
func (m *Manager) UnroutedEvents() uint64 { return m.unrouted.Load() }

// DroppedTimeouts returns how many fired timeouts were dropped because
// their instance had ended or the timeout was cancelled or already
// delivered.
func (m *Manager) DroppedTimeouts() uint64 { return m.droppedTimeouts.Load() }

// registry returns the hook registry for ctx.
func (m *Manager) registry(ctx context.Context) *hooks.Registry {
	if m.cfg.Registry != nil {
		return m.cfg.Registry
	}
	return hooks.FromContext(ctx)
}

// runOp runs fn as the hook operation name when a hook observes the
// family prefix; attrs is called only then.
func (m *Manager) runOp(ctx context.Context, prefix, suffix string, attrs func() []slog.Attr, fn func(context.Context) error) error {
	reg := m.registry(ctx)
	if !reg.EnabledPrefix(prefix) {
		return fn(ctx)
	}
	return contract.RunHooks(ctx, reg, prefix+suffix, attrs(), fn, m.reportHookPanic)
}

// notify emits the notification name when a hook observes it.
func (m *Manager) notify(ctx context.Context, name string, attrs ...slog.Attr) {
	reg := m.registry(ctx)
	if reg.Enabled(name) {
		reg.Notify(ctx, name, attrs)
	}
}

func (m *Manager) reportHookPanic(ctx context.Context, p *hooks.HookPanicError) {
	m.cfg.Logger.ErrorContext(ctx, "sagas: a hook panicked; the step ran unobserved", slog.Any("panic", p.Value))
}

// attemptCounter counts the failed attempts of events, for the backoff
// before a nack. It is bounded: when full it starts over, which only
// shortens some backoffs.
type attemptCounter struct {
	mu sync.Mutex
	n  map[string]int
}

const maxTrackedAttempts = 4096

func (c *attemptCounter) inc(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.n) >= maxTrackedAttempts {
		clear(c.n)
	}
	c.n[id]++
	return c.n[id]
}

func (c *attemptCounter) reset(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.n, id)
}
