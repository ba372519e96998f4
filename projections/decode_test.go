package projections_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// TestDecode_entries_as_redisstream_writes_them publishes messages with
// watermill-redisstream's publisher and reads them back as events, and
// reads dead letters back with redisstream's unmarshaler.
func TestDecode_entries_as_redisstream_writes_them(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	stream := prefix + "wire"
	long := strings.Repeat("x", 70000)
	msgs := []*message.Message{
		message.NewMessage("uuid-1", []byte("payload")),
		message.NewMessage("uuid-2", nil),
		message.NewMessage("uuid-3", []byte(long)),
	}
	msgs[0].Metadata.Set("name", "OrderPlaced")
	msgs[0].Metadata.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	msgs[2].Metadata.Set("long", long)
	for i := range 20 {
		msgs[2].Metadata.Set("k"+strings.Repeat("k", i), "v")
	}
	pub := testsvc.RedisPublisher(t)
	if err := pub.Publish(stream, msgs...); err != nil {
		t.Fatal(err)
	}
	store := projections.NewMemoryStore()
	var got []projections.Event
	w, err := projections.NewWorker(projections.Config{
		Projection: projections.NewProjection("wire", func(_ context.Context, ev projections.Event, _ *projections.Batch) error {
			got = append(got, ev)
			return nil
		}),
		Streams: []string{stream}, Source: projections.NewRedisSource(client), Store: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	waitCaughtUp(t, w, 10e9)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("got %d events, want %d", len(got), len(msgs))
	}
	for i, m := range msgs {
		ev := got[i]
		if ev.UUID != m.UUID || string(ev.Payload) != string(m.Payload) || len(ev.Metadata) != len(m.Metadata) || ev.Stream != stream || ev.ID == "" {
			t.Fatalf("event %d = %+v, want message %s", i, ev, m.UUID)
		}
		for k, v := range m.Metadata {
			if ev.Metadata.Get(k) != v {
				t.Fatalf("event %d metadata %s = %q, want %q", i, k, ev.Metadata.Get(k), v)
			}
		}
	}
	if got[0].Type() != "OrderPlaced" || got[1].Type() != "unknown" {
		t.Fatalf("types %q %q", got[0].Type(), got[1].Type())
	}

	// Dead letters are written in the same encoding: redisstream reads them.
	rs, err := projections.NewRedisStore(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	p := projections.Partition{Projection: "wire"}
	if err := rs.Commit(context.Background(), projections.Commit{Partition: p, DeadLetters: []projections.DeadLetter{{Event: got[2], Error: "boom"}}}); err != nil {
		t.Fatal(err)
	}
	entries, err := client.XRange(context.Background(), rs.Key(p, "deadletter"), "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("dead-letter stream: %v, %v", entries, err)
	}
	back, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(entries[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	if back.UUID != "uuid-3" || back.Metadata.Get("long") != long || len(back.Metadata) != len(msgs[2].Metadata) || string(back.Payload) != long {
		t.Fatalf("redisstream read the dead letter as %s with %d metadata keys", back.UUID, len(back.Metadata))
	}
	if entries[0].Values["error"] != "boom" {
		t.Fatalf("dead letter error = %v", entries[0].Values["error"])
	}
}

func TestDecode_malformed_metadata_is_poison_not_panic(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	stream := prefix + "bad"
	for _, md := range []string{"\x81", "\xdf\xff\xff\xff\xff", "\x81\xa1k\xcc", "\x92\x01\x02", "\x81\xa1k\xa1v!"} {
		client.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: map[string]any{"_watermill_message_uuid": "u", "metadata": md, "payload": "p"}})
	}
	store := projections.NewMemoryStore()
	w, err := projections.NewWorker(projections.Config{
		Projection: sumProjection("bad"), Streams: []string{stream}, Source: projections.NewRedisSource(client), Store: store,
		Poison: projections.PoisonDeadLetter,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	waitCaughtUp(t, w, 10e9)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dls, _ := store.DeadLetters(context.Background(), projections.Partition{Projection: "bad"})
	if len(dls) != 5 {
		t.Fatalf("%d dead letters, want 5", len(dls))
	}
	for _, d := range dls {
		if !strings.Contains(d.Error, "malformed msgpack metadata") {
			t.Fatalf("dead letter error %q", d.Error)
		}
	}
}
