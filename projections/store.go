package projections

import (
	"context"
	"errors"
	"strconv"
)

// Errors of [Store.Commit].
var (
	// ErrFenced is returned when the lease the commit was made under is no
	// longer held: another process owns the partition now, and nothing was
	// written.
	ErrFenced = errors.New("projections: partition lease lost")
	// ErrConflict is returned when the stored checkpoint is not the one the
	// commit started from: another owner applied these entries already,
	// and nothing was written, so no event is applied twice.
	ErrConflict = errors.New("projections: checkpoint moved")
)

// Partition names one partition of one projection: the unit that has a
// checkpoint, a lease and sink writes of its own, committed together.
type Partition struct {
	// Projection is the projection's name.
	Projection string
	// Index is the partition's index, from 0.
	Index int
	// Generation is the generation of the read model: 0 until the first
	// replay, then the one each replay built (see [Worker.Replay]).
	Generation int64
}

// String returns "name:index", or "name@generation:index" after a replay;
// it is also the Redis Cluster hash tag of the partition's keys.
func (p Partition) String() string {
	if p.Generation == 0 {
		return p.Projection + ":" + strconv.Itoa(p.Index)
	}
	return p.Projection + "@" + strconv.FormatInt(p.Generation, 10) + ":" + strconv.Itoa(p.Index)
}

// Checkpoint is the stored position of a partition in each of its streams.
type Checkpoint map[string]Position

// Position is how far a partition has read one stream.
type Position struct {
	// ID is the ID of the last entry applied (or passed over), "0-0"
	// before the first.
	ID string
	// Offset counts the entries ever added to the stream up to ID, so that
	// lag and gaps follow from XINFO STREAM's entries-added; -1 when it is
	// not known (after a gap whose size could not be counted).
	Offset int64
}

// A Store keeps checkpoints, and commits them together with the sink writes
// and dead letters of the entries they cover, atomically: a crash never
// leaves the checkpoint past unwritten data, nor data written whose
// checkpoint did not move (that would apply it twice). [MemoryStore] and
// [RedisStore] implement it; methods must be safe for concurrent use.
type Store interface {
	// Load returns the checkpoint of p; an empty one if none was saved.
	Load(ctx context.Context, p Partition) (Checkpoint, error)
	// Commit writes c atomically, or returns [ErrConflict] when the stored
	// checkpoint is not c.From, or [ErrFenced] when c.Lease is set and no
	// longer held; then it writes nothing.
	Commit(ctx context.Context, c Commit) error
	// Hash returns the fields of the sink hash of p named hash.
	Hash(ctx context.Context, p Partition, hash string) (map[string]string, error)
	// DeadLetters returns the dead letters of p, oldest first.
	DeadLetters(ctx context.Context, p Partition) ([]DeadLetter, error)
	// Generation returns the active generation of projection's read model,
	// the one readers and workers use (0 before any replay).
	Generation(ctx context.Context, projection string) (int64, error)
	// NewGeneration reserves a generation of projection never used before,
	// for a replay to build.
	NewGeneration(ctx context.Context, projection string) (int64, error)
	// Swap makes generation to the active one if from is, atomically, and
	// reports whether it did.
	Swap(ctx context.Context, projection string, from, to int64) (bool, error)
	// Drop deletes everything stored for p: checkpoint, lease, sink hashes
	// and dead letters.
	Drop(ctx context.Context, p Partition) error
}

// Commit is one atomic write of a partition.
type Commit struct {
	Partition Partition
	// Lease is the token of the lease the writer holds; empty when the
	// partition is not leased.
	Lease string
	// From is the checkpoint the batch was read from; To the one to save.
	From, To Checkpoint
	// Writes are the sink writes of the batch, in order.
	Writes []Write
	// DeadLetters are the events of the batch moved to the dead-letter
	// stream.
	DeadLetters []DeadLetter
}

// DeadLetter is an event that failed every attempt, kept with its error.
type DeadLetter struct {
	Event Event
	// Error is the handler's last error message.
	Error string
}

// WriteOp is the kind of a sink [Write].
type WriteOp uint8

// Sink write operations on a hash field.
const (
	// OpSet sets the field to Value (HSET).
	OpSet WriteOp = iota + 1
	// OpIncr adds Delta to the field's integer value (HINCRBY).
	OpIncr
	// OpDelete removes the field (HDEL).
	OpDelete
)

// Write is one sink write on a field of a hash of the partition's read
// model.
type Write struct {
	Op          WriteOp
	Hash, Field string
	Value       string
	Delta       int64
}

// positionsEqual reports whether the stored checkpoint is the one a commit
// started from; a missing stream equals its zero position.
func positionsEqual(stored, from Checkpoint) bool {
	for s, p := range from {
		if compareIDs(stored[s].ID, p.ID) != 0 {
			return false
		}
	}
	for s, p := range stored {
		if _, ok := from[s]; !ok && compareIDs(p.ID, "0-0") != 0 {
			return false
		}
	}
	return true
}
