package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// stores returns a MemoryStore and a RedisStore, for tests that both must
// pass.
func stores(t *testing.T) map[string]interface {
	projections.Store
	projections.Leaser
} {
	client, prefix := testsvc.RedisPrefix(t)
	rs, err := projections.NewRedisStore(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]interface {
		projections.Store
		projections.Leaser
	}{"memory": projections.NewMemoryStore(), "redis": rs}
}

func TestStore_commit_is_fenced_and_checked(t *testing.T) {
	t.Parallel()
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			p := projections.Partition{Projection: "fenced", Index: 3}
			ok, err := store.Acquire(ctx, p, "owner-1", time.Minute)
			if err != nil || !ok {
				t.Fatalf("Acquire = %v, %v", ok, err)
			}
			if ok, _ := store.Acquire(ctx, p, "owner-2", time.Minute); ok {
				t.Fatal("a second owner acquired a held lease")
			}
			start := projections.Checkpoint{"s": {ID: "0-0", Offset: 0}}
			next := projections.Checkpoint{"s": {ID: "5-0", Offset: 5}}
			write := []projections.Write{{Op: projections.OpIncr, Hash: "h", Field: "f", Delta: 2}}
			if err := store.Commit(ctx, projections.Commit{Partition: p, Lease: "owner-1", From: start, To: next, Writes: write}); err != nil {
				t.Fatal(err)
			}
			// Replaying the same batch (a crash after the commit, before
			// the worker saw it) conflicts and writes nothing.
			err = store.Commit(ctx, projections.Commit{Partition: p, Lease: "owner-1", From: start, To: next, Writes: write})
			if !errors.Is(err, projections.ErrConflict) {
				t.Fatalf("second commit = %v, want ErrConflict", err)
			}
			// An owner that lost its lease cannot write.
			if err := store.Release(ctx, p, "owner-1"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := store.Acquire(ctx, p, "owner-2", time.Minute); !ok {
				t.Fatal("cannot acquire a released lease")
			}
			later := projections.Checkpoint{"s": {ID: "9-0", Offset: 9}}
			err = store.Commit(ctx, projections.Commit{Partition: p, Lease: "owner-1", From: next, To: later, Writes: write})
			if !errors.Is(err, projections.ErrFenced) {
				t.Fatalf("commit of a former owner = %v, want ErrFenced", err)
			}
			if ok, _ := store.Renew(ctx, p, "owner-1", time.Minute); ok {
				t.Fatal("a former owner renewed the lease")
			}
			h, err := store.Hash(ctx, p, "h")
			if err != nil || h["f"] != "2" {
				t.Fatalf("hash = %v, %v; want f=2 (one commit applied)", h, err)
			}
			cp, err := store.Load(ctx, p)
			if err != nil || cp["s"] != next["s"] {
				t.Fatalf("checkpoint = %v, %v; want %v", cp, err, next)
			}
			// The new owner goes on.
			if err := store.Commit(ctx, projections.Commit{Partition: p, Lease: "owner-2", From: next, To: later, Writes: write}); err != nil {
				t.Fatal(err)
			}
			if h, _ := store.Hash(ctx, p, "h"); h["f"] != "4" {
				t.Fatalf("hash = %v, want f=4", h)
			}
		})
	}
}

func TestStore_lease_expires(t *testing.T) {
	t.Parallel()
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			p := projections.Partition{Projection: "expiring", Index: 0}
			if ok, _ := store.Acquire(ctx, p, "dead", 100*time.Millisecond); !ok {
				t.Fatal("cannot acquire")
			}
			time.Sleep(150 * time.Millisecond)
			if ok, _ := store.Acquire(ctx, p, "survivor", time.Minute); !ok {
				t.Fatal("an expired lease was not free")
			}
			if n, err := store.Heartbeat(ctx, "expiring", "m1", 100*time.Millisecond); err != nil || n != 1 {
				t.Fatalf("Heartbeat = %d, %v; want 1", n, err)
			}
			if n, _ := store.Heartbeat(ctx, "expiring", "m2", time.Minute); n != 2 {
				t.Fatalf("Heartbeat = %d, want 2 live members", n)
			}
			time.Sleep(150 * time.Millisecond)
			if n, _ := store.Heartbeat(ctx, "expiring", "m2", time.Minute); n != 1 {
				t.Fatalf("Heartbeat = %d after m1 expired, want 1", n)
			}
		})
	}
}

func TestRedisStore_partition_keys_share_a_hash_tag(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	store, err := projections.NewRedisStore(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	p := projections.Partition{Projection: "orders", Index: 2}
	for _, suffix := range []string{"checkpoint", "lease", "deadletter", "h:totals"} {
		if k := store.Key(p, suffix); k != prefix+"projection:{orders:2}:"+suffix {
			t.Fatalf("key = %q", k)
		}
	}
	if _, err := projections.NewRedisStore(client, "bad{prefix"); err == nil {
		t.Fatal("a prefix with a brace was accepted")
	}
}
