package sagas

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// CorruptInstanceError is returned by [RedisStore.Load] and
// [RedisStore.History] when a stored value of an instance does not decode
// (it was not written by this store, or was damaged). Retrying does not
// help, unlike a Redis error: the manager treats the instance as poison.
type CorruptInstanceError struct {
	// Type and ID name the instance; Field the value that does not
	// decode ("state", "timeouts", "history[3]", ...).
	Type, ID, Field string
	// Err is the decoding error.
	Err error
}

// Error names the instance, the field and the cause.
func (e *CorruptInstanceError) Error() string {
	return fmt.Sprintf("sagas: stored instance %s/%s is corrupt: field %s: %v", e.Type, e.ID, e.Field, e.Err)
}

// Unwrap returns the decoding error.
func (e *CorruptInstanceError) Unwrap() error { return e.Err }

// The fields of the instance hash.
const (
	fieldVersion   = "version"
	fieldStatus    = "status"
	fieldOutcome   = "outcome"
	fieldState     = "state"
	fieldProcessed = "processed"
	fieldPending   = "pending"
	fieldTimeouts  = "timeouts"
	fieldFailures  = "failures"
	fieldLastError = "last_error"
	fieldStartedAt = "started_at"
	fieldUpdatedAt = "updated_at"
)

// encodeFields returns the field/value arguments of HSET for inst.
func encodeFields(inst Instance) ([]any, error) {
	processed, err := jsonList(inst.Processed, len(inst.Processed))
	if err != nil {
		return nil, fmt.Errorf("encoding processed: %w", err)
	}
	pending, err := jsonList(inst.Pending, len(inst.Pending))
	if err != nil {
		return nil, fmt.Errorf("encoding pending: %w", err)
	}
	timeouts, err := jsonList(inst.Timeouts, len(inst.Timeouts))
	if err != nil {
		return nil, fmt.Errorf("encoding timeouts: %w", err)
	}
	started, err := inst.StartedAt.UTC().MarshalText()
	if err != nil {
		return nil, fmt.Errorf("encoding started_at: %w", err)
	}
	updated, err := inst.UpdatedAt.UTC().MarshalText()
	if err != nil {
		return nil, fmt.Errorf("encoding updated_at: %w", err)
	}
	return []any{
		fieldVersion, strconv.FormatInt(inst.Version, 10),
		fieldStatus, inst.Status,
		fieldOutcome, inst.Outcome,
		fieldState, inst.State,
		fieldProcessed, processed,
		fieldPending, pending,
		fieldTimeouts, timeouts,
		fieldFailures, strconv.Itoa(inst.Failures),
		fieldLastError, inst.LastError,
		fieldStartedAt, started,
		fieldUpdatedAt, updated,
	}, nil
}

// jsonList encodes a slice of n elements as a JSON array, "[]" when empty
// (never "null": the Lua scripts iterate the arrays).
func jsonList(v any, n int) ([]byte, error) {
	if n == 0 {
		return []byte("[]"), nil
	}
	return json.Marshal(v)
}

// decodeFields decodes the instance hash h of sagaType/id.
func decodeFields(sagaType, id string, h map[string]string) (Instance, error) {
	inst := Instance{Type: sagaType, ID: id}
	d := fieldDecoder{sagaType: sagaType, id: id, h: h}
	inst.Version = d.int(fieldVersion)
	inst.Status = d.str(fieldStatus)
	inst.Outcome = d.str(fieldOutcome)
	if s := d.str(fieldState); s != "" {
		inst.State = []byte(s)
	}
	d.json(fieldProcessed, &inst.Processed)
	d.json(fieldPending, &inst.Pending)
	d.json(fieldTimeouts, &inst.Timeouts)
	inst.Failures = int(d.int(fieldFailures))
	inst.LastError = d.str(fieldLastError)
	inst.StartedAt = d.time(fieldStartedAt)
	inst.UpdatedAt = d.time(fieldUpdatedAt)
	if d.err != nil {
		return Instance{}, d.err
	}
	return inst, nil
}

// fieldDecoder keeps the first decoding error, so that decodeFields reads
// as a list of fields.
type fieldDecoder struct {
	sagaType, id string
	h            map[string]string
	err          error
}

func (d *fieldDecoder) fail(field string, err error) {
	if d.err == nil {
		d.err = &CorruptInstanceError{Type: d.sagaType, ID: d.id, Field: field, Err: err}
	}
}

func (d *fieldDecoder) str(field string) string {
	v, ok := d.h[field]
	if !ok {
		d.fail(field, errMissingField)
	}
	return v
}

func (d *fieldDecoder) int(field string) int64 {
	v, ok := d.h[field]
	if !ok {
		d.fail(field, errMissingField)
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		d.fail(field, err)
	}
	return n
}

func (d *fieldDecoder) json(field string, dst any) {
	v, ok := d.h[field]
	if !ok {
		d.fail(field, errMissingField)
		return
	}
	if err := json.Unmarshal([]byte(v), dst); err != nil {
		d.fail(field, err)
	}
}

func (d *fieldDecoder) time(field string) time.Time {
	v, ok := d.h[field]
	if !ok {
		d.fail(field, errMissingField)
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalText([]byte(v)); err != nil {
		d.fail(field, err)
	}
	return t
}

// errMissingField is the cause of a CorruptInstanceError for a field the
// store always writes.
var errMissingField = errors.New("field missing")

// dueScore is the timeouts index score of due: unix milliseconds rounded
// up, so that a timeout is never reported before it is due.
func dueScore(due time.Time) int64 {
	ms := due.UnixMilli()
	if due.Nanosecond()%int(time.Millisecond) != 0 {
		ms++
	}
	return ms
}
