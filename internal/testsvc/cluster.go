package testsvc

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is the number of master nodes [RedisCluster] starts.
const clusterMasters = 3

// clusterStartTimeout bounds the start of a node and the convergence of the
// cluster.
const clusterStartTimeout = 20 * time.Second

// RedisCluster starts a Redis Cluster of three masters (no replicas) on
// 127.0.0.1, on free ports, from the redis-server binary in PATH, and
// returns a client for it. The cluster is the test's own: it has no keys
// but the test's, and its servers are killed (by their PIDs) and their
// files removed when the test ends. Starting one takes two seconds or more
// (a freshly started master waits two seconds before its cluster state
// turns ok), so call it once in a top-level test and share the client among
// its subtests.
//
// Unlike [Redis], it needs no running service: only the redis-server
// binary (Redis 6 or later). When it is missing the test fails, never
// skips, with a message telling how to install it.
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("testsvc: redis-server is not in PATH (%v); the Redis Cluster tests start their own "+
			"cluster from it and are never skipped: install Redis (apt-get install redis-server, "+
			"brew install redis); scripts/test-services.sh installs it when it starts Redis itself", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()

	nodes := make([]*redis.Client, clusterMasters)
	addrs := make([]string, clusterMasters)
	for i := range clusterMasters {
		addrs[i], nodes[i] = startClusterNode(ctx, t, bin, dir)
	}
	for i, node := range nodes {
		lo, hi := i*16384/clusterMasters, (i+1)*16384/clusterMasters-1
		if err := node.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("testsvc: Redis Cluster node %s: CLUSTER ADDSLOTS %d-%d: %v", addrs[i], lo, hi, err)
		}
	}
	for _, addr := range addrs[1:] {
		host, port, _ := net.SplitHostPort(addr)
		if err := nodes[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatalf("testsvc: Redis Cluster: CLUSTER MEET %s: %v", addr, err)
		}
	}
	for i, node := range nodes {
		waitClusterOK(ctx, t, node, addrs[i])
	}

	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: redisPingTimeout})
	t.Cleanup(func() { _ = client.Close() })
	if err := client.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
		return shard.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("testsvc: Redis Cluster %v: %v", addrs, err)
	}
	return client
}

// startClusterNode starts one cluster-enabled redis-server on a free port
// and returns its address and a client for it. It retries on another port
// when the one it probed was taken in between.
func startClusterNode(ctx context.Context, t testing.TB, bin, dir string) (string, *redis.Client) {
	t.Helper()
	var lastErr error
	for range 5 {
		port, err := freeClusterPort()
		if err != nil {
			lastErr = err
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		node, err := startServer(ctx, t, bin, dir, port)
		if err == nil {
			return addr, node
		}
		lastErr = err
	}
	t.Fatalf("testsvc: cannot start a Redis Cluster node: %v", lastErr)
	return "", nil
}

// startServer runs redis-server on port, registers its kill with
// t.Cleanup and waits until it answers PING.
func startServer(ctx context.Context, t testing.TB, bin, dir string, port int) (*redis.Client, error) {
	p := strconv.Itoa(port)
	logFile := filepath.Join(dir, "redis-"+p+".log")
	cmd := exec.Command(bin,
		"--port", p, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes-"+p+".conf"),
		"--cluster-node-timeout", "5000",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", dir, "--logfile", logFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill() // by its PID: only the server this call started
		<-exited
	}

	node := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + p, DialTimeout: time.Second, MaxRetries: -1})
	for {
		err := node.Ping(ctx).Err()
		if err == nil {
			break
		}
		select {
		case <-exited:
			_ = node.Close()
			log, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("redis-server on port %s exited: %s%s", p, out.Bytes(), lastLines(log, 5))
		case <-ctx.Done():
			_ = node.Close()
			stop()
			return nil, fmt.Errorf("redis-server on port %s does not answer PING: %w", p, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Cleanup(func() {
		_ = node.Close()
		stop()
	})
	return node, nil
}

// freeClusterPort returns a port of 127.0.0.1 that is free, and whose
// cluster bus port (port+10000) is free too.
func freeClusterPort() (int, error) {
	for range 50 {
		port := 20000 + rand.IntN(35000)
		if portFree(port) && portFree(port+10000) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port pair (p, p+10000) found on 127.0.0.1")
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// waitClusterOK waits until node reports cluster_state:ok and knows every
// master and slot.
func waitClusterOK(ctx context.Context, t testing.TB, node *redis.Client, addr string) {
	t.Helper()
	want := []string{
		"cluster_state:ok",
		"cluster_slots_ok:16384",
		"cluster_known_nodes:" + strconv.Itoa(clusterMasters),
	}
	var info string
	for {
		var err error
		info, err = node.ClusterInfo(ctx).Result()
		ready := err == nil
		for _, w := range want {
			ready = ready && strings.Contains(info, w)
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testsvc: Redis Cluster node %s not ready after %v (%v):\n%s", addr, clusterStartTimeout, err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// lastLines returns the last n lines of b, for error messages.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
