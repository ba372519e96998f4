package projections

import "fmt"

// GapError reports unapplied entries removed from a stream before the
// projection applied them (trimmed or deleted).
type GapError struct {
	Partition Partition
	Stream    string
	// After is the checkpoint the entries were missing after; Upto the
	// highest ID known to be removed (the first entry still present, when
	// the stream was trimmed past the checkpoint).
	After, Upto string
	// Skipped is the number of entries removed, -1 when it could not be
	// counted within Config.CountLimit.
	Skipped int64
}

func (e *GapError) Error() string {
	n := "an unknown number of"
	if e.Skipped >= 0 {
		n = fmt.Sprint(e.Skipped)
	}
	return fmt.Sprintf("projections: gap in stream %s for %s: %s unapplied entries after %s (up to %s) were removed before they were applied",
		e.Stream, e.Partition, n, e.After, e.Upto)
}

// PoisonError reports an event that failed every attempt under
// [PoisonStop]; the worker stopped before it.
type PoisonError struct {
	Partition Partition
	Stream    string
	ID        string
	UUID      string
	Attempts  int
	Err       error
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("projections: %s stopped at entry %s of %s (message %s) after %d attempts: %v",
		e.Partition, e.ID, e.Stream, e.UUID, e.Attempts, e.Err)
}

func (e *PoisonError) Unwrap() error { return e.Err }
