package projections

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// Field names of a stream entry as watermill-redisstream's default
// marshaler writes them: the message UUID, its payload and its metadata
// (msgpack).
const (
	FieldUUID     = "_watermill_message_uuid"
	FieldPayload  = "payload"
	FieldMetadata = "metadata"
)

// Entry is one stream entry as read from a [Source]: its ID and its fields.
type Entry struct {
	// ID is the stream entry ID, "<milliseconds>-<sequence>".
	ID string
	// Values are the entry's fields. Values read from Redis are strings.
	Values map[string]any
}

// Event is a decoded stream entry: a Watermill message and where it sits
// in its stream. Handlers must not modify Metadata or Payload.
type Event struct {
	// Stream is the stream the entry was read from; ID its entry ID.
	Stream, ID string
	// UUID, Metadata and Payload are those of the published message.
	UUID     string
	Metadata message.Metadata
	Payload  []byte
}

// Type returns the event's type: its "name" metadata (set by Watermill's
// cqrs marshalers), bounded in size, or "unknown".
func (e Event) Type() string {
	if v := e.Metadata.Get(contract.NameKey); v != "" {
		return bound.String(v, bound.Attribute)
	}
	return "unknown"
}

// Time returns the time encoded in the event's entry ID: when Redis added
// it.
func (e Event) Time() time.Time {
	t, _ := entryTime(e.ID)
	return t
}

// ErrUndecodable is wrapped by the error of an entry that is not a message
// written by watermill-redisstream's default marshaler.
var ErrUndecodable = errors.New("projections: entry is not a watermill message")

// decodeEntry decodes an entry written by watermill-redisstream's default
// marshaler. Untrusted input never makes it panic.
func decodeEntry(stream string, e Entry) (Event, error) {
	uuid, ok := stringValue(e.Values[FieldUUID])
	if !ok || uuid == "" {
		return Event{}, fmt.Errorf("%w: field %s is missing", ErrUndecodable, FieldUUID)
	}
	payload, _ := stringValue(e.Values[FieldPayload])
	ev := Event{Stream: stream, ID: e.ID, UUID: uuid, Payload: []byte(payload), Metadata: message.Metadata{}}
	if raw, _ := stringValue(e.Values[FieldMetadata]); raw != "" {
		md, err := decodeMetadata([]byte(raw))
		if err != nil {
			return Event{}, fmt.Errorf("%w: %w", ErrUndecodable, err)
		}
		if md != nil {
			ev.Metadata = md
		}
	}
	return ev, nil
}

// encodeEntry returns the fields watermill-redisstream's default marshaler
// writes for a message.
func encodeEntry(uuid string, md map[string]string, payload []byte) map[string]any {
	return map[string]any{
		FieldUUID:     uuid,
		FieldMetadata: string(encodeMetadata(md)),
		FieldPayload:  string(payload),
	}
}

func stringValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

// An entryID is a parsed stream entry ID. The zero value is "0-0", before
// every entry.
type entryID struct{ ms, seq uint64 }

func parseID(s string) (entryID, error) {
	if s == "" || s == "0" {
		return entryID{}, nil
	}
	msPart, seqPart, ok := strings.Cut(s, "-")
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return entryID{}, fmt.Errorf("invalid stream entry ID %q", s)
	}
	var seq uint64
	if ok {
		if seq, err = strconv.ParseUint(seqPart, 10, 64); err != nil {
			return entryID{}, fmt.Errorf("invalid stream entry ID %q", s)
		}
	}
	return entryID{ms, seq}, nil
}

func (a entryID) less(b entryID) bool {
	return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq
}

func (a entryID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// compareIDs compares two entry IDs; malformed ones sort as "0-0".
func compareIDs(a, b string) int {
	x, _ := parseID(a)
	y, _ := parseID(b)
	switch {
	case x.less(y):
		return -1
	case y.less(x):
		return 1
	}
	return 0
}

func entryTime(id string) (time.Time, bool) {
	x, err := parseID(id)
	if err != nil || x.ms > 1<<62 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(x.ms)), true
}
