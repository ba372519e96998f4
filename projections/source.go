package projections

import (
	"context"
	"time"
)

// A Source gives a worker the entries of streams and the facts about them
// that checkpoints, lag and gap detection need. [RedisSource] reads Redis
// Streams; [MemoryLog] is an in-memory log for tests and demos. Its methods
// must be safe for concurrent use.
type Source interface {
	// Read returns, for each stream of reads, up to count entries after
	// its position in ID order, with the stream's StreamInfo taken at the
	// same instant as the read (atomically), so that a worker can tell
	// entries removed before it read them from entries added since. A
	// stream that does not exist has no entries and a zero StreamInfo.
	Read(ctx context.Context, reads []StreamRead, count int) ([]StreamBatch, error)
	// Wait returns when one of the streams may have an entry after its
	// position, when block has passed, or when ctx is done (with its error).
	Wait(ctx context.Context, reads []StreamRead, block time.Duration) error
	// Info returns the stream's StreamInfo (zero for a missing stream).
	Info(ctx context.Context, stream string) (StreamInfo, error)
	// Count returns how many entries of stream come after the entry ID
	// after, counting at most limit of them, and the stream's StreamInfo at
	// the same instant.
	Count(ctx context.Context, stream, after string, limit int64) (int64, StreamInfo, error)
	// Oldest returns the ID of the first entry of stream after the entry
	// ID after ("" if there is none) and the source's clock (Redis TIME),
	// read together.
	Oldest(ctx context.Context, stream, after string) (id string, now time.Time, err error)
}

// StreamRead names a stream and the entry ID after which to read it.
type StreamRead struct {
	Stream string
	After  string
}

// StreamBatch is what [Source.Read] returns for one stream.
type StreamBatch struct {
	Stream  string
	Entries []Entry
	Info    StreamInfo
}

// StreamInfo is what XINFO STREAM reports about a stream.
type StreamInfo struct {
	// Length is the number of entries in the stream.
	Length int64
	// LastGeneratedID is the ID of the last entry ever added.
	LastGeneratedID string
	// MaxDeletedID is the highest ID removed by XDEL ("0-0" if none).
	// Trimming does not change it.
	MaxDeletedID string
	// FirstID is the ID of the first entry in the stream ("0-0" if empty).
	FirstID string
	// EntriesAdded counts the entries ever added.
	EntriesAdded int64
}
