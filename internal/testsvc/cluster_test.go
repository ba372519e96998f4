package testsvc

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisClusterStartsAndStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFakeTB(t, t.Name())
	var client *redis.ClusterClient
	if !f.run(func(tb testing.TB) { client = RedisCluster(tb) }) {
		t.Fatalf("RedisCluster failed: %s", f.fatal)
	}
	defer f.runCleanups()

	info, err := client.ClusterInfo(ctx).Result()
	for _, want := range []string{"cluster_state:ok", "cluster_slots_ok:16384", "cluster_size:3"} {
		if err != nil || !strings.Contains(info, want) {
			t.Errorf("CLUSTER INFO lacks %q (%v):\n%s", want, err, info)
		}
	}
	var (
		mu    sync.Mutex
		addrs []string
	)
	if err := client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		addrs = append(addrs, m.Options().Addr)
		return nil
	}); err != nil || len(addrs) != 3 {
		t.Fatalf("masters: %v, %v; want 3", addrs, err)
	}
	// Keys of many slots are written and read through the one client.
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "{t}x", "{t}y"} {
		if err := client.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if v, err := client.Get(ctx, k).Result(); err != nil || v != k {
			t.Fatalf("GET %s: %q, %v", k, v, err)
		}
	}
	var nodesWithKeys atomic.Int32 // ForEachMaster calls concurrently
	if err := client.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if n, err := m.DBSize(ctx).Result(); err != nil {
			return err
		} else if n > 0 {
			nodesWithKeys.Add(1)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if nodesWithKeys.Load() < 2 {
		t.Errorf("keys landed on %d node(s), want them spread over the masters", nodesWithKeys.Load())
	}

	f.runCleanups()
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
		if err := c.Ping(ctx).Err(); err == nil {
			t.Errorf("node %s still answers after the cleanup", addr)
		}
		_ = c.Close()
	}
}

func TestRedisClusterWithoutRedisServerFailsLoudly(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := newFakeTB(t, t.Name())
	if f.run(func(tb testing.TB) { RedisCluster(tb) }) {
		t.Fatal("RedisCluster returned without redis-server")
	}
	if f.skipped {
		t.Fatal("RedisCluster skipped the test instead of failing it")
	}
	for _, want := range []string{"redis-server", "PATH", "install"} {
		if !strings.Contains(f.fatal, want) {
			t.Errorf("failure message %q does not mention %q", f.fatal, want)
		}
	}
}

// TestRedisClusterReplicasFailOver: a cluster of three masters with a
// replica each, on append-only files: every replica in sync at the start,
// a master killed and its replica promoted with the writes it
// acknowledged (WAIT), the killed node started again and back as a replica
// in sync.
func TestRedisClusterReplicasFailOver(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := StartRedisCluster(t, ClusterConfig{Replicas: 1, AppendOnly: true, NodeTimeout: 1500 * time.Millisecond})
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	masters := c.Masters(ctx)
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3", len(masters))
	}
	for _, n := range c.Nodes[3:] {
		if role := n.Role(ctx); role != "replica" {
			t.Errorf("node %s: role %q, want replica", n.Addr, role)
		}
	}
	for _, n := range c.Nodes {
		if aof, err := n.Client().ConfigGet(ctx, "appendfsync").Result(); err != nil || aof["appendfsync"] != "always" {
			t.Errorf("node %s: appendfsync %v, %v", n.Addr, aof, err)
		}
	}

	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, k := range keys {
		if err := c.Client.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	victim, err := c.Client.MasterForKey(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var killed *ClusterNode
	for _, n := range c.Nodes {
		if n.Announced == victim.Options().Addr {
			killed = n
		}
	}
	if killed == nil {
		t.Fatalf("no node at %s", victim.Options().Addr)
	}
	// Replication is asynchronous: a replica takes over with what it has
	// received, and the SETs above were acknowledged by the master alone.
	// A write and WAIT on one connection to the victim make its replica
	// acknowledge every key set above (the replication stream is ordered).
	conn := victim.Conn()
	defer conn.Close()
	if err := conn.Set(ctx, "{a}synced", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Wait(ctx, 1, 10*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT on %s: %d replicas acknowledged the writes, %v", victim.Options().Addr, n, err)
	}
	promoted, err := c.FailOver(ctx, killed)
	if err != nil {
		t.Fatal(err)
	}
	if killed.Alive() || promoted.Role(ctx) != "master" {
		t.Fatalf("after the failover: killed alive %v, promoted %s role %q", killed.Alive(), promoted.Addr, promoted.Role(ctx))
	}
	if v, err := promoted.Client().Get(ctx, "a").Result(); err != nil || v != "v-a" {
		t.Errorf("GET a on the promoted replica: %q, %v", v, err)
	}
	if err := killed.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if role := killed.Role(ctx); role != "replica" {
		t.Errorf("the restarted node: role %q, want replica", role)
	}
	// A fresh client finds every key; the slots moved, nothing was lost.
	fresh := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{promoted.Announced}})
	defer fresh.Close()
	for _, k := range keys {
		if v, err := fresh.Get(ctx, k).Result(); err != nil || v != "v-"+k {
			t.Errorf("GET %s after the failover: %q, %v", k, v, err)
		}
	}
}
