package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// TestRedisCluster runs on a real 3-node Redis Cluster: the store's
// commit, fencing and leases (every key of a partition in one slot), and
// the partition scenario (two processes, one killed) at the small size.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testsvc.RedisCluster(t)
	addrs := cluster.Options().Addrs

	t.Run("store", func(t *testing.T) {
		store, err := projections.NewRedisStore(cluster, testsvc.Prefix(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Partitions of one projection land on different slots; each
		// commit touches one.
		for i := range 8 {
			p := projections.Partition{Projection: "clustered", Index: i}
			if ok, err := store.Acquire(ctx, p, "me", time.Minute); err != nil || !ok {
				t.Fatalf("Acquire %d = %v, %v", i, ok, err)
			}
			c := projections.Commit{
				Partition: p, Lease: "me",
				From:        projections.Checkpoint{"s": {ID: "0-0"}},
				To:          projections.Checkpoint{"s": {ID: "1-0", Offset: 1}},
				Writes:      []projections.Write{{Op: projections.OpSet, Hash: "a", Field: "f", Value: "v"}, {Op: projections.OpIncr, Hash: "b", Field: "n", Delta: 1}},
				DeadLetters: []projections.DeadLetter{{Event: projections.Event{UUID: "u", Stream: "s", ID: "1-0"}, Error: "boom"}},
			}
			if err := store.Commit(ctx, c); err != nil {
				t.Fatalf("commit of partition %d: %v", i, err)
			}
			if err := store.Commit(ctx, c); !errors.Is(err, projections.ErrConflict) {
				t.Fatalf("second commit of partition %d = %v, want ErrConflict", i, err)
			}
			c.Lease, c.From = "someone else", c.To
			if err := store.Commit(ctx, c); !errors.Is(err, projections.ErrFenced) {
				t.Fatalf("fenced commit of partition %d = %v, want ErrFenced", i, err)
			}
			if n, err := store.Heartbeat(ctx, "clustered", "me", time.Minute); err != nil || n != 1 {
				t.Fatalf("Heartbeat = %d, %v", n, err)
			}
		}
		gen, err := store.NewGeneration(ctx, "clustered")
		if err != nil || gen != 1 {
			t.Fatalf("NewGeneration = %d, %v", gen, err)
		}
		if ok, err := store.Swap(ctx, "clustered", 0, gen); err != nil || !ok {
			t.Fatalf("Swap = %v, %v", ok, err)
		}
	})

	t.Run("two_processes_one_killed", func(t *testing.T) {
		runPartitionScenario(t, cluster, testsvc.Prefix(t), addrs, false)
	})
}
