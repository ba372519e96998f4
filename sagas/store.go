package sagas

import (
	"context"
	"errors"
	"time"
)

// ErrConflict is returned by [Store.Save] when the stored version of the
// instance is not the one the step read: another process saved a step in
// between. The manager reloads and retries.
var ErrConflict = errors.New("sagas: version conflict")

// Outcome values of an instance and of a step record. An active instance has
// the empty outcome.
const (
	OutcomeCompleted   = "completed"
	OutcomeCompensated = "compensated"
	OutcomeFailed      = "failed"
	OutcomeTimedOut    = "timed_out"
)

// Instance is one saga instance as stored: its encoded state and everything
// that must change with it in one atomic write.
type Instance struct {
	// Type is the saga type name, ID the instance key (an order ID).
	Type, ID string
	// Version counts the saved steps; 0 is an instance never saved.
	Version int64
	// Status is the name of the state the saga is in ("awaiting_payment").
	Status string
	// Outcome is empty while the saga is active, else one of the Outcome
	// constants.
	Outcome string
	// State is the state encoded by the definition's codec.
	State []byte
	// Processed holds the UUIDs of the events (and IDs of the timeouts)
	// already applied, newest last, bounded by the manager.
	Processed []string
	// Pending holds the commands of saved steps not yet published.
	Pending []PendingMessage
	// Timeouts holds the scheduled timeouts not yet fired or cancelled.
	Timeouts []Timeout
	// Failures counts consecutive poison failures of the event in
	// LastError's step; reset by a successful step.
	Failures int
	// LastError is the error of the last failed step, for History and logs.
	LastError string
	// StartedAt is when the first step was saved; UpdatedAt the last.
	StartedAt, UpdatedAt time.Time
}

// PendingMessage is a complete message saved with the step that produced it,
// published verbatim (same UUID, metadata and payload) by the manager or by
// recovery.
type PendingMessage struct {
	UUID     string            `json:"uuid"`
	Topic    string            `json:"topic"`
	Metadata map[string]string `json:"metadata"`
	Payload  []byte            `json:"payload"`
}

// Timeout is a timeout scheduled by a step.
type Timeout struct {
	// ID identifies this scheduling of the timeout (unique per instance);
	// Name is the step-given name ("payment").
	ID   string `json:"id"`
	Name string `json:"name"`
	// Due is when it fires; ScheduledAt when the step scheduled it.
	Due         time.Time `json:"due"`
	ScheduledAt time.Time `json:"scheduled_at"`
	// Trace is the trace context (W3C traceparent, tracestate, baggage
	// keys) of the step that scheduled it, so that the timeout step
	// continues or links to that trace.
	Trace map[string]string `json:"trace,omitempty"`
}

// DueTimeout names a timeout whose time has come, as found by
// [Store.DueTimeouts].
type DueTimeout struct {
	Type, ID  string
	TimeoutID string
	Due       time.Time
}

// StepRecord is one entry of an instance's history, written in the same
// atomic write as the state it led to.
type StepRecord struct {
	Version int64 `json:"version"`
	// Trigger is "event" or "timeout".
	Trigger string `json:"trigger"`
	// EventType and EventID name the event handled (the timeout name and
	// ID for a timeout step).
	EventType string `json:"event_type"`
	EventID   string `json:"event_id"`
	// Commands are the message types and UUIDs of the commands sent.
	Commands  []CommandRecord `json:"commands,omitempty"`
	FromState string          `json:"from_state"`
	ToState   string          `json:"to_state"`
	// Outcome is "running", one of the Outcome constants, or "error" for a
	// failed attempt that did not end the saga.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
	// Process identifies the process that ran the step.
	Process string    `json:"process"`
	TraceID string    `json:"trace_id,omitempty"`
	SpanID  string    `json:"span_id,omitempty"`
	Time    time.Time `json:"time"`
}

// CommandRecord names a command a step sent.
type CommandRecord struct {
	Type string `json:"type"`
	UUID string `json:"uuid"`
}

// SaveRequest is one atomic write of [Store.Save].
type SaveRequest struct {
	// Instance is the new content; its Version must be Expected+1.
	Instance Instance
	// Expected is the version the step read (0: the instance must not
	// exist yet).
	Expected int64
	// Record is appended to the instance's history, which the store keeps
	// bounded to the newest HistoryLimit records (0: the store's default).
	Record       StepRecord
	HistoryLimit int
}

// Store keeps saga instances. Every method is safe for concurrent use by
// many processes; every write that changes an instance is atomic with its
// indexes (pending commands, due timeouts, active instances), so a crash
// between two calls loses nothing.
//
// The Redis implementation ([RedisStore]) keeps all keys of one instance and
// its index entries under one hash tag, so it works on Redis Cluster; the
// in-memory one ([MemoryStore]) is for unit tests and embedded demos.
type Store interface {
	// Load returns the instance, or found=false when it was never saved.
	Load(ctx context.Context, sagaType, id string) (inst Instance, found bool, err error)
	// Save writes req atomically when the stored version equals
	// req.Expected, else returns ErrConflict and writes nothing. It
	// indexes the instance as having pending commands when
	// req.Instance.Pending is non-empty, its timeouts by due time, and as
	// active (by StartedAt) while its Outcome is empty.
	Save(ctx context.Context, req SaveRequest) error
	// MarkSent removes the pending messages with the given UUIDs from
	// the instance, without changing its version, and drops it from the
	// pending index when none is left. Unknown UUIDs are ignored.
	MarkSent(ctx context.Context, sagaType, id string, uuids []string) error
	// History returns the instance's step records, oldest first.
	History(ctx context.Context, sagaType, id string) ([]StepRecord, error)

	// WithPending returns up to limit IDs of instances of sagaType that
	// have pending messages, in no particular order. A limit of zero or
	// less returns none.
	WithPending(ctx context.Context, sagaType string, limit int) ([]string, error)
	// DueTimeouts returns up to limit timeouts of sagaType due at or
	// before now, earliest first. A store may keep due times at
	// millisecond precision: it then rounds them up, so that a timeout is
	// never reported early, and the reported Due may be up to a
	// millisecond later than the scheduled one. A limit of zero or less
	// returns none.
	DueTimeouts(ctx context.Context, sagaType string, now time.Time, limit int) ([]DueTimeout, error)
	// Active returns how many instances of sagaType are active and the
	// StartedAt of the oldest (zero when none), which a store may
	// truncate to the millisecond.
	Active(ctx context.Context, sagaType string) (count int64, oldest time.Time, err error)

	// TryLock takes the instance lock with token for ttl when nobody
	// holds it; it reports whether it did.
	TryLock(ctx context.Context, sagaType, id, token string, ttl time.Duration) (bool, error)
	// Unlock releases the lock only if token still holds it; it reports
	// whether it did.
	Unlock(ctx context.Context, sagaType, id, token string) (bool, error)
}
