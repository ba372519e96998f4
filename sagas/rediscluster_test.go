package sagas_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// TestRedisStore_cluster runs the conformance suite on a real three-master
// Redis Cluster: a script that touched two slots would fail with CROSSSLOT,
// and the global queries read buckets spread over every master.
func TestRedisStore_cluster(t *testing.T) {
	t.Parallel()
	client := testsvc.RedisCluster(t)

	t.Run("conformance", func(t *testing.T) {
		testStore(t, func(t *testing.T) sagas.Store {
			// The cluster is this test's own and discarded at its end, so
			// the keys need no cleanup.
			return newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: testsvc.Prefix(t)})
		})
	})

	t.Run("keys of an instance share the slot the server computes", func(t *testing.T) {
		ctx := context.Background()
		prefix := testsvc.Prefix(t)
		s := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix})
		ids := []string{"order-1", "order-2", "order-3", "order-4", "order-5", "order-6", "order-7", "order-8"}
		masters := map[string]bool{}
		for _, id := range ids {
			inst := instance(id, 1)
			inst.Pending = []sagas.PendingMessage{{UUID: "c-" + id, Topic: "t"}}
			inst.Timeouts = []sagas.Timeout{{ID: "to-" + id, Name: "payment", Due: base, ScheduledAt: base}}
			save(t, s, inst)
			if ok, err := s.TryLock(ctx, sagaType, id, "tok", time.Minute); err != nil || !ok {
				t.Fatalf("TryLock %s: %v, %v", id, ok, err)
			}
			tag := prefix + "{" + sagaType + ":" + strconv.Itoa(int(fnv1a(id)%sagas.DefaultRedisBuckets)) + "}:"
			for _, key := range []string{tag + "inst:" + id, tag + "hist:" + id, tag + "lock:" + id, tag + "pending", tag + "timeouts", tag + "active"} {
				slot, err := client.ClusterKeySlot(ctx, key).Result()
				if err != nil {
					t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
				}
				if int(slot) != keySlot(key) {
					t.Errorf("key %q: server slot %d, test's CRC16 slot %d", key, slot, keySlot(key))
				}
				if n, err := client.Exists(ctx, key).Result(); err != nil || n != 1 {
					t.Errorf("key %q: exists %d, %v", key, n, err)
				}
			}
			master, err := client.MasterForKey(ctx, tag)
			if err != nil {
				t.Fatalf("MasterForKey: %v", err)
			}
			masters[master.Options().Addr] = true
		}
		if len(masters) < 2 {
			t.Errorf("8 instances landed on %d master(s), want them spread", len(masters))
		}
		due, err := s.DueTimeouts(ctx, sagaType, base, 100)
		if err != nil || len(due) != len(ids) {
			t.Errorf("DueTimeouts over every master: %d, %v; want %d", len(due), err, len(ids))
		}
		n, _, err := s.Active(ctx, sagaType)
		if err != nil || n != int64(len(ids)) {
			t.Errorf("Active over every master: %d, %v; want %d", n, err, len(ids))
		}
	})
}
