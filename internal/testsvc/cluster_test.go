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
