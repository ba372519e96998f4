package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisSource is the [Source] of Redis Streams written by
// watermill-redisstream (standalone or Cluster). A worker's streams are
// read with one XREAD in a MULTI with their XINFO STREAM, so in a Cluster
// the streams of one projection must share a slot: give them a common hash
// tag ("{orders}.placed", "{orders}.paid"); a single stream always works.
type RedisSource struct {
	client redis.UniversalClient
}

// NewRedisSource returns a RedisSource that reads with client.
func NewRedisSource(client redis.UniversalClient) *RedisSource {
	return &RedisSource{client: client}
}

// Read implements [Source].
func (s *RedisSource) Read(ctx context.Context, reads []StreamRead, count int) ([]StreamBatch, error) {
	pipe := s.client.TxPipeline()
	xreads := make([]*redis.XStreamSliceCmd, len(reads))
	infos := make([]*redis.XInfoStreamCmd, len(reads))
	for i, r := range reads {
		xreads[i] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{r.Stream, canonicalID(r.After)}, Count: int64(count), Block: -1})
		infos[i] = pipe.XInfoStream(ctx, r.Stream)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !noSuchKey(err) {
		return nil, fmt.Errorf("cannot read streams: %w", err)
	}
	out := make([]StreamBatch, len(reads))
	for i, r := range reads {
		out[i].Stream = r.Stream
		info, err := streamInfo(infos[i])
		if err != nil {
			return nil, err
		}
		out[i].Info = info
		res, err := xreads[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("cannot read stream %s: %w", r.Stream, err)
		}
		for _, st := range res {
			for _, m := range st.Messages {
				out[i].Entries = append(out[i].Entries, Entry{ID: m.ID, Values: m.Values})
			}
		}
	}
	return out, nil
}

func noSuchKey(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such key")
}

func streamInfo(cmd *redis.XInfoStreamCmd) (StreamInfo, error) {
	info, err := cmd.Result()
	if noSuchKey(err) {
		return StreamInfo{LastGeneratedID: "0-0", MaxDeletedID: "0-0", FirstID: "0-0"}, nil
	}
	if err != nil {
		return StreamInfo{}, fmt.Errorf("cannot read stream info: %w", err)
	}
	first := info.RecordedFirstEntryID
	if info.Length == 0 || first == "" {
		first = "0-0"
	}
	return StreamInfo{
		Length:          info.Length,
		LastGeneratedID: info.LastGeneratedID,
		MaxDeletedID:    info.MaxDeletedEntryID,
		FirstID:         first,
		EntriesAdded:    info.EntriesAdded,
	}, nil
}

// Info implements [Source] with XINFO STREAM.
func (s *RedisSource) Info(ctx context.Context, stream string) (StreamInfo, error) {
	return streamInfo(s.client.XInfoStream(ctx, stream))
}

// Wait implements [Source] with a blocking XREAD.
func (s *RedisSource) Wait(ctx context.Context, reads []StreamRead, block time.Duration) error {
	streams := make([]string, 0, 2*len(reads))
	for _, r := range reads {
		streams = append(streams, r.Stream)
	}
	for _, r := range reads {
		streams = append(streams, canonicalID(r.After))
	}
	err := s.client.XRead(ctx, &redis.XReadArgs{Streams: streams, Count: 1, Block: max(block, time.Millisecond)}).Err()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("cannot wait for streams: %w", err)
	}
	return nil
}

// Count implements [Source] with XRANGE in a MULTI with XINFO STREAM.
func (s *RedisSource) Count(ctx context.Context, stream, after string, limit int64) (int64, StreamInfo, error) {
	pipe := s.client.TxPipeline()
	rng := pipe.XRangeN(ctx, stream, "("+canonicalID(after), "+", limit)
	infoCmd := pipe.XInfoStream(ctx, stream)
	if _, err := pipe.Exec(ctx); err != nil && !noSuchKey(err) {
		return 0, StreamInfo{}, fmt.Errorf("cannot count stream %s: %w", stream, err)
	}
	info, err := streamInfo(infoCmd)
	if err != nil {
		return 0, StreamInfo{}, err
	}
	return int64(len(rng.Val())), info, nil
}

// Oldest implements [Source] with XRANGE COUNT 1, then TIME (two calls:
// in a Cluster, TIME belongs to no slot).
func (s *RedisSource) Oldest(ctx context.Context, stream, after string) (string, time.Time, error) {
	msgs, err := s.client.XRangeN(ctx, stream, "("+canonicalID(after), "+", 1).Result()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("cannot read stream %s: %w", stream, err)
	}
	now, err := s.client.Time(ctx).Result()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("cannot read the Redis clock: %w", err)
	}
	id := ""
	if len(msgs) > 0 {
		id = msgs[0].ID
	}
	return id, now, nil
}
