package projections

import "context"

// A Projection turns events into writes on a read model. Handle is called
// for the events of one partition in stream order, never concurrently for
// one partition; it must put its effects into b rather than write them
// itself, so that they are committed with the checkpoint. When Handle
// returns an error, its writes to b are discarded and the event is retried
// (see [RetryPolicy]).
type Projection interface {
	// Name names the projection in operation names, keys and metrics:
	// letters, digits, '_', '-' and '.'.
	Name() string
	Handle(ctx context.Context, ev Event, b *Batch) error
}

// HandlerFunc handles one event of a [Projection] made by [NewProjection].
type HandlerFunc func(ctx context.Context, ev Event, b *Batch) error

// NewProjection returns a Projection named name that handles events with fn.
func NewProjection(name string, fn HandlerFunc) Projection {
	return funcProjection{name: name, fn: fn}
}

type funcProjection struct {
	name string
	fn   HandlerFunc
}

func (p funcProjection) Name() string { return p.name }

func (p funcProjection) Handle(ctx context.Context, ev Event, b *Batch) error {
	return p.fn(ctx, ev, b)
}

// Batch collects the sink writes of the events of one batch, which the
// worker commits together with the checkpoint. The hashes it writes belong
// to the event's partition (see [Store.Hash]). It is not safe for
// concurrent use.
type Batch struct {
	writes []Write
}

// Set sets field of hash to value.
func (b *Batch) Set(hash, field, value string) {
	b.writes = append(b.writes, Write{Op: OpSet, Hash: hash, Field: field, Value: value})
}

// Incr adds delta to the integer value of field of hash (missing: 0).
func (b *Batch) Incr(hash, field string, delta int64) {
	b.writes = append(b.writes, Write{Op: OpIncr, Hash: hash, Field: field, Delta: delta})
}

// Delete removes field from hash.
func (b *Batch) Delete(hash, field string) {
	b.writes = append(b.writes, Write{Op: OpDelete, Hash: hash, Field: field})
}

// Len returns the number of writes collected so far.
func (b *Batch) Len() int { return len(b.writes) }

// truncate drops the writes after the first n: those of a failed attempt.
func (b *Batch) truncate(n int) { b.writes = b.writes[:n] }
