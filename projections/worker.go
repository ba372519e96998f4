package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// A Worker runs a [Projection] over streams: see the package
// documentation. Its methods are safe for concurrent use, but Run must not
// run twice at once on one Worker (run one Worker per process; partitions
// are shared between processes through the Leaser).
type Worker struct {
	cfg    Config
	name   string
	prop   *contract.Propagation
	report contract.ReportFunc

	mu sync.Mutex
	// owned marks the partitions this worker runs now.
	owned []bool
	// stopErr is the error that stopped the worker (poison, gap), if any.
	stopErr error

	replay replayState
}

// NewWorker returns a Worker configured by cfg.
func NewWorker(cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("projections: invalid config: %w", err)
	}
	cfg.Streams = append([]string(nil), cfg.Streams...)
	if cfg.Member == "" {
		cfg.Member = randomToken()
	}
	return &Worker{
		cfg:    cfg,
		name:   cfg.Projection.Name(),
		prop:   contract.NewPropagation(contract.PropagationConfig{Propagator: cfg.Propagator, Logger: cfg.Logger}),
		owned:  make([]bool, cfg.Partitions),
		report: reportHookPanic(cfg.Logger),
	}, nil
}

// Name returns the projection's name.
func (w *Worker) Name() string { return w.name }

// Partitions returns the number of partitions.
func (w *Worker) Partitions() int { return w.cfg.Partitions }

// Owned returns the indexes of the partitions this worker runs now.
func (w *Worker) Owned() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []int
	for i, ok := range w.owned {
		if ok {
			out = append(out, i)
		}
	}
	return out
}

// Err returns the error that stopped the worker ([*PoisonError],
// [*GapError]), or nil while it runs or after a clean stop.
func (w *Worker) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopErr
}

func (w *Worker) setOwned(i int, ok bool) {
	w.mu.Lock()
	w.owned[i] = ok
	w.mu.Unlock()
}

func randomToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (w *Worker) registry(ctx context.Context) *hooks.Registry {
	if w.cfg.Hooks != nil {
		return w.cfg.Hooks
	}
	return hooks.FromContext(ctx)
}

// Run runs the worker until ctx is done (it then returns ctx's error) or a
// policy stops it (it returns a [*PoisonError] or [*GapError], also kept
// in Err). Without a Leaser it runs every partition; with one, it takes
// its share of the partitions not owned by live workers, renews their
// leases, and hands over any above its share. It runs the active
// generation of the read model and moves to a new one when a replay swaps
// it in. Transient Redis errors are logged and retried. Run may be called
// again after it returns.
func (w *Worker) Run(ctx context.Context) error {
	ctx = hooks.WithRegistry(ctx, w.registry(ctx))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.mu.Lock()
	w.stopErr = nil
	w.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(p Partition, token string) *partitionRun {
		return w.start(ctx, &wg, p, token, func(err error) { cancel(err) })
	}
	if w.cfg.Leaser == nil {
		w.runAll(ctx, start)
	} else {
		w.own(ctx, start)
	}
	return w.result(ctx)
}

// start runs partition p on a goroutine of wg; stop is called with the
// error of a policy that stopped it.
func (w *Worker) start(ctx context.Context, wg *sync.WaitGroup, p Partition, token string, stop func(error)) *partitionRun {
	pctx, pcancel := context.WithCancel(ctx)
	r := &partitionRun{cancel: pcancel, done: make(chan struct{}), token: token}
	w.setOwned(p.Index, true)
	wg.Go(func() {
		defer close(r.done)
		defer w.setOwned(p.Index, false)
		err := w.runPartition(pctx, p, token)
		var gap *GapError
		var poison *PoisonError
		if errors.As(err, &gap) || errors.As(err, &poison) {
			w.mu.Lock()
			w.stopErr = err
			w.mu.Unlock()
			stop(err)
		}
	})
	return r
}

func (w *Worker) result(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// partitionRun is a partition this worker runs.
type partitionRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	token  string
}

func (r *partitionRun) stop() {
	r.cancel()
	<-r.done
}

// watchInterval is how often a worker checks the active generation and
// its leases.
func (w *Worker) watchInterval() time.Duration { return max(w.cfg.LeaseTTL/4, time.Millisecond) }

// generation returns the active generation, or current if it cannot be
// read.
func (w *Worker) generation(ctx context.Context, current int64) int64 {
	g, err := w.cfg.Store.Generation(ctx, w.name)
	if err != nil {
		w.logError(ctx, "cannot read the active generation", err)
		return current
	}
	return g
}

// runAll runs every partition of the active generation, and restarts them
// on the new one when a replay swaps it in.
func (w *Worker) runAll(ctx context.Context, start func(Partition, string) *partitionRun) {
	gen := int64(-1)
	var runs []*partitionRun
	stopAll := func() {
		for _, r := range runs {
			r.stop()
		}
		runs = nil
	}
	defer stopAll()
	tick := time.NewTicker(w.watchInterval())
	defer tick.Stop()
	for {
		if g := w.generation(ctx, gen); g != gen && ctx.Err() == nil && g >= 0 {
			stopAll()
			gen = g
			for i := range w.cfg.Partitions {
				runs = append(runs, start(Partition{Projection: w.name, Index: i, Generation: gen}, ""))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// own is the ownership loop: every quarter of the lease TTL it heartbeats,
// renews its leases, releases partitions above its share (the live members
// split the partitions evenly) and acquires free ones below it, all in the
// active generation.
func (w *Worker) own(ctx context.Context, start func(Partition, string) *partitionRun) {
	ttl, n := w.cfg.LeaseTTL, w.cfg.Partitions
	leaser := w.cfg.Leaser
	gen := int64(-1)
	runs := make(map[int]*partitionRun)
	part := func(i int) Partition { return Partition{Projection: w.name, Index: i, Generation: gen} }
	stop := func(i int) {
		r := runs[i]
		r.stop()
		delete(runs, i)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
		defer cancel()
		if err := leaser.Release(rctx, part(i), r.token); err != nil {
			w.logError(ctx, "cannot release a partition lease; it expires by itself", err)
		}
	}
	defer func() {
		for i := range runs {
			stop(i)
		}
	}()
	// Start the search for free partitions at a place of our own, so that
	// members starting together do not all race for partition 0.
	first := PartitionOf(w.cfg.Member, n)
	tick := time.NewTicker(w.watchInterval())
	defer tick.Stop()
	for {
		if g := w.generation(ctx, gen); g != gen && ctx.Err() == nil {
			for i := range runs {
				stop(i)
			}
			gen = g
		}
		// A run that ended by itself (lease lost) is forgotten.
		for i, r := range runs {
			select {
			case <-r.done:
				delete(runs, i)
			default:
			}
		}
		live, err := leaser.Heartbeat(ctx, w.name, w.cfg.Member, ttl)
		if err != nil && ctx.Err() == nil {
			w.logError(ctx, "cannot heartbeat; leases are kept until they expire", err)
		}
		for i, r := range runs {
			ok, err := leaser.Renew(ctx, part(i), r.token, ttl)
			if err == nil && !ok {
				w.cfg.Logger.WarnContext(ctx, "projections: partition lease lost",
					slog.String(attrProjection, w.name), slog.Int(attrPartition, i))
				r.stop()
				delete(runs, i)
			}
		}
		if err == nil && live > 0 {
			share := (n + live - 1) / live
			for i := n - 1; i >= 0 && len(runs) > share; i-- {
				if _, ok := runs[i]; ok {
					stop(i)
				}
			}
			for k := 0; k < n && len(runs) < share && ctx.Err() == nil; k++ {
				i := (first + k) % n
				if _, ok := runs[i]; ok {
					continue
				}
				// The token names its owner, for operators reading the lease.
				token := w.cfg.Member + "/" + randomToken()
				ok, err := leaser.Acquire(ctx, part(i), token, ttl)
				if err != nil {
					w.logError(ctx, "cannot acquire a partition lease", err)
					break
				}
				if ok {
					runs[i] = start(part(i), token)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *Worker) logError(ctx context.Context, msg string, err error) {
	if ctx.Err() != nil {
		return
	}
	w.cfg.Logger.ErrorContext(ctx, "projections: "+msg,
		slog.String(attrProjection, w.name),
		slog.String(attrError, bound.String(err.Error(), bound.Error)))
}

// Hash returns the sink hash named hash of the active generation of the
// read model, merged over the partitions (fields of higher partitions win, which matters only if two
// partitions write one field).
func (w *Worker) Hash(ctx context.Context, hash string) (map[string]string, error) {
	gen, err := w.cfg.Store.Generation(ctx, w.name)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for i := range w.cfg.Partitions {
		m, err := w.cfg.Store.Hash(ctx, Partition{Projection: w.name, Index: i, Generation: gen}, hash)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, m)
	}
	return out, nil
}

// StreamNames returns the streams the worker reads.
func (w *Worker) StreamNames() []string { return append([]string(nil), w.cfg.Streams...) }
