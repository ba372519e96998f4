package projections

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// MemoryLog is a [Source] in memory: streams of entries encoded as
// watermill-redisstream writes them, appended with [MemoryLog.Append] or
// fed from any Watermill subscriber with [MemoryLog.Feed]. It follows
// Redis' bookkeeping (entries added, highest deleted ID, first ID) so that
// lag and gaps behave as on Redis, and serves unit tests and demos that run
// without a server. The zero value is not usable; call [NewMemoryLog].
type MemoryLog struct {
	mu      sync.Mutex
	streams map[string]*memoryStream
	// changed is closed and replaced whenever an entry is appended.
	changed chan struct{}
	now     func() time.Time
}

type memoryStream struct {
	entries      []Entry
	last         entryID
	maxDeleted   entryID
	entriesAdded int64
}

// NewMemoryLog returns an empty MemoryLog.
func NewMemoryLog() *MemoryLog {
	return &MemoryLog{streams: make(map[string]*memoryStream), changed: make(chan struct{}), now: time.Now}
}

func (l *MemoryLog) stream(name string) *memoryStream {
	s := l.streams[name]
	if s == nil {
		s = &memoryStream{}
		l.streams[name] = s
	}
	return s
}

// Append adds msg to stream as watermill-redisstream's publisher would,
// and returns its entry ID.
func (l *MemoryLog) Append(stream string, msg *message.Message) string {
	return l.AppendValues(stream, encodeEntry(msg.UUID, msg.Metadata, msg.Payload))
}

// AppendValues adds an entry with the given fields to stream, and returns
// its entry ID. Use it for entries that are not Watermill messages.
func (l *MemoryLog) AppendValues(stream string, values map[string]any) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stream(stream)
	ms := uint64(max(l.now().UnixMilli(), 0))
	id := entryID{ms: ms}
	if !s.last.less(id) {
		id = entryID{ms: s.last.ms, seq: s.last.seq + 1}
	}
	s.last = id
	s.entriesAdded++
	s.entries = append(s.entries, Entry{ID: id.String(), Values: values})
	close(l.changed)
	l.changed = make(chan struct{})
	return id.String()
}

// Feed subscribes to topic with sub and appends every message it receives
// to the stream named topic, acknowledging it once appended, until ctx is
// done or the subscription ends.
func (l *MemoryLog) Feed(ctx context.Context, sub message.Subscriber, topic string) error {
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		return fmt.Errorf("cannot subscribe to %s: %w", topic, err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg, ok := <-msgs:
			if !ok {
				return nil
			}
			l.Append(topic, msg)
			msg.Ack()
		}
	}
}

// Delete removes the entries with the given IDs from stream, as XDEL does,
// and returns how many there were.
func (l *MemoryLog) Delete(stream string, ids ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stream(stream)
	n := 0
	s.entries = slices.DeleteFunc(s.entries, func(e Entry) bool {
		if !slices.Contains(ids, e.ID) {
			return false
		}
		n++
		if x, _ := parseID(e.ID); s.maxDeleted.less(x) {
			s.maxDeleted = x
		}
		return true
	})
	return n
}

// Trim keeps the newest maxLen entries of stream, as XTRIM MAXLEN does, and
// returns how many it removed.
func (l *MemoryLog) Trim(stream string, maxLen int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stream(stream)
	n := max(len(s.entries)-max(maxLen, 0), 0)
	s.entries = slices.Delete(s.entries, 0, n)
	return n
}

func (s *memoryStream) info() StreamInfo {
	first := "0-0"
	if len(s.entries) > 0 {
		first = s.entries[0].ID
	}
	return StreamInfo{
		Length:          int64(len(s.entries)),
		LastGeneratedID: s.last.String(),
		MaxDeletedID:    s.maxDeleted.String(),
		FirstID:         first,
		EntriesAdded:    s.entriesAdded,
	}
}

// after returns the index of the first entry after id.
func (s *memoryStream) after(id string) int {
	x, _ := parseID(id)
	i, _ := slices.BinarySearchFunc(s.entries, x, func(e Entry, x entryID) int {
		y, _ := parseID(e.ID)
		if !x.less(y) {
			return -1
		}
		return 1
	})
	return i
}

// Read implements [Source].
func (l *MemoryLog) Read(_ context.Context, reads []StreamRead, count int) ([]StreamBatch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]StreamBatch, len(reads))
	for i, r := range reads {
		s := l.stream(r.Stream)
		from := s.after(r.After)
		to := min(from+count, len(s.entries))
		out[i] = StreamBatch{Stream: r.Stream, Entries: slices.Clone(s.entries[from:to]), Info: s.info()}
	}
	return out, nil
}

// Wait implements [Source].
func (l *MemoryLog) Wait(ctx context.Context, reads []StreamRead, block time.Duration) error {
	l.mu.Lock()
	for _, r := range reads {
		s := l.stream(r.Stream)
		if s.after(r.After) < len(s.entries) {
			l.mu.Unlock()
			return nil
		}
	}
	changed := l.changed
	l.mu.Unlock()
	t := time.NewTimer(block)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C:
	}
	return nil
}

// Info implements [Source].
func (l *MemoryLog) Info(_ context.Context, stream string) (StreamInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stream(stream).info(), nil
}

// Count implements [Source].
func (l *MemoryLog) Count(_ context.Context, stream, after string, limit int64) (int64, StreamInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stream(stream)
	return min(int64(len(s.entries)-s.after(after)), limit), s.info(), nil
}

// Oldest implements [Source].
func (l *MemoryLog) Oldest(_ context.Context, stream, after string) (string, time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stream(stream)
	if i := s.after(after); i < len(s.entries) {
		return s.entries[i].ID, l.now(), nil
	}
	return "", l.now(), nil
}
