package projections_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// sourceUnderTest is a Source with the writes a test needs.
type sourceUnderTest struct {
	src    projections.Source
	add    func(i int) string
	trim   func(maxLen int)
	delete func(id string)
}

// TestSources_agree runs the same appends, trims and deletions on Redis
// and on the in-memory log and checks that both report the same facts, so
// that unit tests on MemoryLog mean what they would on Redis.
func TestSources_agree(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	stream := prefix + "agree"
	log := projections.NewMemoryLog()
	for name, s := range map[string]sourceUnderTest{
		"redis": {
			src: projections.NewRedisSource(client),
			add: func(i int) string {
				values, _ := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(stream, eventMessage(i, 3))
				return client.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: values}).Val()
			},
			trim:   func(n int) { client.XTrimMaxLen(context.Background(), stream, int64(n)) },
			delete: func(id string) { client.XDel(context.Background(), stream, id) },
		},
		"memory": {
			src:    log,
			add:    func(i int) string { return log.Append(stream, eventMessage(i, 3)) },
			trim:   func(n int) { log.Trim(stream, n) },
			delete: func(id string) { log.Delete(stream, id) },
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			info, err := s.src.Info(ctx, stream)
			if err != nil || info.Length != 0 || info.EntriesAdded != 0 {
				t.Fatalf("missing stream: %+v, %v", info, err)
			}
			var ids []string
			for i := range 10 {
				ids = append(ids, s.add(i))
			}
			s.trim(7) // removes 0, 1, 2
			s.delete(ids[5])
			info, err = s.src.Info(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if info.Length != 6 || info.EntriesAdded != 10 || info.FirstID != ids[3] || info.MaxDeletedID != ids[5] || info.LastGeneratedID != ids[9] {
				t.Fatalf("info = %+v, want length 6, 10 added, first %s, max deleted %s, last %s", info, ids[3], ids[5], ids[9])
			}
			batches, err := s.src.Read(ctx, []projections.StreamRead{{Stream: stream, After: ids[3]}}, 3)
			if err != nil || len(batches) != 1 || len(batches[0].Entries) != 3 || batches[0].Entries[0].ID != ids[4] || batches[0].Entries[1].ID != ids[6] {
				t.Fatalf("Read = %+v, %v; want entries 4, 6, 7", batches, err)
			}
			if batches[0].Info != info {
				t.Fatalf("Read info = %+v, want %+v", batches[0].Info, info)
			}
			n, _, err := s.src.Count(ctx, stream, ids[4], 100)
			if err != nil || n != 4 {
				t.Fatalf("Count after entry 4 = %d, %v; want 4", n, err)
			}
			if n, _, _ := s.src.Count(ctx, stream, ids[4], 2); n != 2 {
				t.Fatalf("Count limited to 2 = %d", n)
			}
			id, now, err := s.src.Oldest(ctx, stream, ids[6])
			if err != nil || id != ids[7] || now.IsZero() {
				t.Fatalf("Oldest = %s, %v, %v; want %s", id, now, err, ids[7])
			}
			if id, _, _ := s.src.Oldest(ctx, stream, ids[9]); id != "" {
				t.Fatalf("Oldest after the last = %q, want none", id)
			}
		})
	}
}
