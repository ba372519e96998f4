package testsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterMasters is the number of master nodes a cluster has.
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
// skips, with a message telling how to install it. [StartRedisCluster]
// starts one with replicas, append-only files, and nodes a test can kill.
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	return StartRedisCluster(t, ClusterConfig{}).Client
}

// ClusterConfig is the shape of a cluster [StartRedisCluster] starts. The
// zero value is the cluster of [RedisCluster].
type ClusterConfig struct {
	// Replicas is the number of replicas of each of the three masters.
	Replicas int
	// AppendOnly runs every node with --appendonly yes --appendfsync
	// always, so that a node killed with SIGKILL and started again keeps
	// every write it acknowledged.
	AppendOnly bool
	// NodeTimeout is --cluster-node-timeout: how long a master is
	// unreachable before the others mark it failed and a replica takes
	// over. Zero means 5s.
	NodeTimeout time.Duration
	// Announce, when set, is called with each node's address (127.0.0.1
	// and its port) before the node starts, and returns the address the
	// node announces to clients and replicas instead
	// (--cluster-announce-port): a proxy in front of it, say. Its host must
	// be 127.0.0.1. The cluster bus (node to node) stays direct.
	Announce func(addr string) string
}

// Cluster is a Redis Cluster a test started with [StartRedisCluster].
type Cluster struct {
	// Client is a cluster client on the announced addresses.
	Client *redis.ClusterClient
	// Nodes are the nodes in the order they started: the masters first,
	// then the replicas (replica j of master i is Nodes[3+i*Replicas+j]).
	// Roles change with failovers; [ClusterNode.Role] tells the current
	// one.
	Nodes []*ClusterNode

	t   testing.TB
	bin string
	cfg ClusterConfig
}

// ClusterNode is one redis-server of a [Cluster].
type ClusterNode struct {
	// Addr is where the node listens; Announced what it announces to
	// clients (Addr without [ClusterConfig.Announce]).
	Addr, Announced string
	// ID is its cluster node ID.
	ID string

	cluster *Cluster
	port    int
	dir     string
	client  *redis.Client // direct, to Addr

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedisCluster starts a Redis Cluster of three masters, each with
// cfg.Replicas replicas, on free ports of 127.0.0.1, and waits until its
// state is ok and every replica is in sync with its master. Everything
// [RedisCluster] says holds: the cluster is the test's, its servers are
// killed by their PIDs and their files removed when the test ends, and a
// missing redis-server fails the test.
func StartRedisCluster(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("testsvc: redis-server is not in PATH (%v); the Redis Cluster tests start their own "+
			"cluster from it and are never skipped: install Redis (apt-get install redis-server, "+
			"brew install redis); scripts/test-services.sh installs it when it starts Redis itself", err)
	}
	if cfg.NodeTimeout == 0 {
		cfg.NodeTimeout = 5 * time.Second
	}
	c := &Cluster{t: t, bin: bin, cfg: cfg}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()

	total := clusterMasters * (1 + cfg.Replicas)
	for range total {
		c.Nodes = append(c.Nodes, c.startNewNode(ctx, dir))
	}
	for i, n := range c.Nodes[:clusterMasters] {
		lo, hi := i*16384/clusterMasters, (i+1)*16384/clusterMasters-1
		if err := n.client.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("testsvc: Redis Cluster node %s: CLUSTER ADDSLOTS %d-%d: %v", n.Addr, lo, hi, err)
		}
	}
	for _, n := range c.Nodes[1:] {
		// The bus port is port+10000 of the address given: the real one.
		if err := c.Nodes[0].client.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(n.port)).Err(); err != nil {
			t.Fatalf("testsvc: Redis Cluster: CLUSTER MEET %s: %v", n.Addr, err)
		}
	}
	for _, n := range c.Nodes {
		waitClusterOK(ctx, t, n.client, n.Addr, total)
	}
	for i, n := range c.Nodes[clusterMasters:] {
		master := c.Nodes[i/max(cfg.Replicas, 1)]
		if err := n.client.ClusterReplicate(ctx, master.ID).Err(); err != nil {
			t.Fatalf("testsvc: Redis Cluster node %s: CLUSTER REPLICATE %s (%s): %v", n.Addr, master.ID, master.Addr, err)
		}
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("testsvc: Redis Cluster not ready after %v: %v", clusterStartTimeout, err)
	}

	addrs := make([]string, clusterMasters)
	for i, n := range c.Nodes[:clusterMasters] {
		addrs[i] = n.Announced
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: redisPingTimeout})
	t.Cleanup(func() { _ = c.Client.Close() })
	if err := c.Client.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
		return shard.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("testsvc: Redis Cluster %v: %v", addrs, err)
	}
	return c
}

// startNewNode starts one cluster-enabled redis-server on a free port and
// its own directory, retrying on another port when the one it probed was
// taken in between, and registers its end with t.Cleanup.
func (c *Cluster) startNewNode(ctx context.Context, dir string) *ClusterNode {
	t := c.t
	t.Helper()
	var lastErr error
	for range 5 {
		port, err := freeClusterPort()
		if err != nil {
			lastErr = err
			continue
		}
		n := &ClusterNode{cluster: c, port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), dir: filepath.Join(dir, "node-"+strconv.Itoa(port))}
		n.Announced = n.Addr
		if c.cfg.Announce != nil {
			n.Announced = c.cfg.Announce(n.Addr)
		}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			t.Fatalf("testsvc: %v", err)
		}
		n.client = redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, MaxRetries: -1})
		if err = n.start(ctx); err != nil {
			_ = n.client.Close()
			lastErr = err
			continue
		}
		t.Cleanup(func() {
			_ = n.client.Close()
			n.Kill()
		})
		if n.ID, err = n.client.ClusterMyID(ctx).Result(); err != nil {
			t.Fatalf("testsvc: Redis Cluster node %s: CLUSTER MYID: %v", n.Addr, err)
		}
		return n
	}
	t.Fatalf("testsvc: cannot start a Redis Cluster node: %v", lastErr)
	return nil
}

// start runs redis-server on the node's port and files and waits until it
// answers PING.
func (n *ClusterNode) start(ctx context.Context) error {
	cfg := n.cluster.cfg
	p := strconv.Itoa(n.port)
	logFile := filepath.Join(n.dir, "redis.log")
	args := []string{
		"--port", p, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
		// A replica that must resynchronise in full does so at once.
		"--repl-diskless-sync-delay", "0",
		"--save", "", "--daemonize", "no",
		"--dir", n.dir, "--logfile", logFile,
	}
	if cfg.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if n.Announced != n.Addr {
		_, announced, err := net.SplitHostPort(n.Announced)
		if err != nil {
			return fmt.Errorf("announced address %q: %w", n.Announced, err)
		}
		args = append(args, "--cluster-announce-port", announced, "--cluster-announce-bus-port", strconv.Itoa(n.port+10000))
	}
	cmd := exec.Command(n.cluster.bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", n.cluster.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	for {
		err := n.client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile)
			n.mu.Lock()
			n.cmd = nil
			n.mu.Unlock()
			return fmt.Errorf("redis-server on port %s exited: %s%s", p, out.Bytes(), lastLines(log, 5))
		case <-ctx.Done():
			n.Kill()
			return fmt.Errorf("redis-server on port %s does not answer PING: %w", p, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops the node with SIGKILL (by the PID of the server this package
// started) and waits until it exited. It does nothing when the node is
// down.
func (n *ClusterNode) Kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts a killed node again, on its port and its files (its
// nodes.conf, its append-only file): it rejoins the cluster, as a replica
// when another node took its slots over meanwhile.
func (n *ClusterNode) Restart(ctx context.Context) error {
	if n.Alive() {
		return fmt.Errorf("node %s is running", n.Addr)
	}
	return n.start(ctx)
}

// Alive reports whether the node's server is running.
func (n *ClusterNode) Alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Client returns a client of the node alone, at its own address.
func (n *ClusterNode) Client() *redis.Client { return n.client }

// Log returns the node's log file.
func (n *ClusterNode) Log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "redis.log"))
	return string(b)
}

// nodeView is what a node says of itself.
type nodeView struct {
	master   bool
	slots    bool   // a master serving slots
	masterID string // of a replica
	// Replication (INFO replication): a replica's link and offset, a
	// master's offset.
	linkUp  bool
	syncing bool
	offset  int64
	// clusterOK: cluster_state ok, every slot served.
	clusterOK bool
	// failing lists the nodes this one flags fail or fail?.
	failing []string
	known   int
}

// view asks the node about itself.
func (n *ClusterNode) view(ctx context.Context) (nodeView, error) {
	var v nodeView
	nodes, err := n.client.ClusterNodes(ctx).Result()
	if err != nil {
		return v, err
	}
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		v.known++
		has := func(flag string) bool { return strings.Contains(","+f[2]+",", ","+flag+",") }
		if has("fail") || has("fail?") {
			v.failing = append(v.failing, f[0])
		}
		if !has("myself") {
			continue
		}
		v.master = has("master")
		v.slots = v.master && len(f) > 8
		if !v.master {
			v.masterID = f[3]
		}
	}
	if err := n.replication(ctx, &v); err != nil {
		return v, err
	}
	cinfo, err := n.client.ClusterInfo(ctx).Result()
	if err != nil {
		return v, err
	}
	v.clusterOK = strings.Contains(cinfo, "cluster_state:ok") && strings.Contains(cinfo, "cluster_slots_ok:16384")
	return v, nil
}

// replication reads INFO replication into v: a replica's link and
// offset, a master's offset.
func (n *ClusterNode) replication(ctx context.Context, v *nodeView) error {
	info, err := n.client.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	field := func(key string) string {
		for _, line := range strings.Split(info, "\n") {
			if val, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
				return val
			}
		}
		return ""
	}
	v.linkUp = field("master_link_status") == "up"
	v.syncing = field("master_sync_in_progress") == "1"
	key := "master_repl_offset"
	if !v.master {
		key = "slave_repl_offset"
	}
	v.offset, _ = strconv.ParseInt(field(key), 10, 64)
	return nil
}

// Role returns "master" for a node serving slots, "replica" for a replica,
// "" when it is down or does not answer.
func (n *ClusterNode) Role(ctx context.Context) string {
	if !n.Alive() {
		return ""
	}
	v, err := n.view(ctx)
	switch {
	case err != nil:
		return ""
	case v.slots:
		return "master"
	case !v.master:
		return "replica"
	}
	return ""
}

// Masters returns the live nodes serving slots.
func (c *Cluster) Masters(ctx context.Context) []*ClusterNode {
	var out []*ClusterNode
	for _, n := range c.Nodes {
		if n.Role(ctx) == "master" {
			out = append(out, n)
		}
	}
	return out
}

// WaitReady waits until every node runs, sees the cluster ok and no node
// failing, and every master has its replicas, each linked and in sync: a
// replica's offset has reached the one its master had a moment before.
// It returns the last reason it was not ready when ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		err := c.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) ready(ctx context.Context) error {
	views := make(map[string]nodeView, len(c.Nodes))
	byID := make(map[string]*ClusterNode, len(c.Nodes))
	for _, n := range c.Nodes {
		if !n.Alive() {
			return fmt.Errorf("node %s is down", n.Addr)
		}
		v, err := n.view(ctx)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr, err)
		}
		switch {
		case !v.clusterOK:
			return fmt.Errorf("node %s: cluster state not ok", n.Addr)
		case v.known != len(c.Nodes):
			return fmt.Errorf("node %s knows %d nodes, want %d", n.Addr, v.known, len(c.Nodes))
		case len(v.failing) > 0:
			return fmt.Errorf("node %s flags %v failing", n.Addr, v.failing)
		}
		views[n.ID], byID[n.ID] = v, n
	}
	// The masters' offsets were read first: each replica's, read now, has
	// reached its master's when it is in sync, even under traffic.
	replicas := map[string]int{}
	for id, v := range views {
		if v.master {
			continue
		}
		if err := byID[id].replication(ctx, &v); err != nil {
			return fmt.Errorf("node %s: %w", byID[id].Addr, err)
		}
		master, ok := views[v.masterID]
		switch {
		case !ok || !master.slots:
			return fmt.Errorf("replica %s replicates %s, no master of the cluster", byID[id].Addr, v.masterID)
		case !v.linkUp || v.syncing:
			return fmt.Errorf("replica %s: link to its master %s not up (syncing %v)", byID[id].Addr, byID[v.masterID].Addr, v.syncing)
		case v.offset < master.offset:
			return fmt.Errorf("replica %s at offset %d, its master %s at %d", byID[id].Addr, v.offset, byID[v.masterID].Addr, master.offset)
		}
		replicas[v.masterID]++
	}
	masters := 0
	for id, v := range views {
		if !v.slots {
			continue
		}
		masters++
		if replicas[id] != c.cfg.Replicas {
			return fmt.Errorf("master %s has %d replicas in sync, want %d", byID[id].Addr, replicas[id], c.cfg.Replicas)
		}
	}
	if masters != clusterMasters {
		return fmt.Errorf("%d masters serve slots, want %d", masters, clusterMasters)
	}
	return nil
}

// FailOver kills master (a live node serving slots) with SIGKILL and
// waits until one of its replicas serves its slots and every live node
// sees the cluster ok again; it returns the promoted replica. The killed
// node stays down: [ClusterNode.Restart] brings it back, as a replica of
// the promoted one.
func (c *Cluster) FailOver(ctx context.Context, master *ClusterNode) (*ClusterNode, error) {
	var replicas []*ClusterNode
	for _, n := range c.Nodes {
		if n == master || !n.Alive() {
			continue
		}
		if v, err := n.view(ctx); err == nil && !v.master && v.masterID == master.ID {
			replicas = append(replicas, n)
		}
	}
	if len(replicas) == 0 {
		return nil, fmt.Errorf("master %s has no replica to take over", master.Addr)
	}
	master.Kill()
	var lastErr error
	for {
		promoted, err := c.failedOver(ctx, master, replicas)
		if err == nil {
			return promoted, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no failover of %s: %w", master.Addr, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) failedOver(ctx context.Context, killed *ClusterNode, replicas []*ClusterNode) (*ClusterNode, error) {
	var promoted *ClusterNode
	for _, n := range c.Nodes {
		if n == killed || !n.Alive() {
			continue
		}
		v, err := n.view(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Addr, err)
		}
		if !v.clusterOK {
			return nil, fmt.Errorf("node %s: cluster state not ok", n.Addr)
		}
		for _, r := range replicas {
			if r == n && v.slots {
				promoted = n
			}
		}
	}
	if promoted == nil {
		return nil, errors.New("none of its replicas serves slots")
	}
	return promoted, nil
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
// node and slot.
func waitClusterOK(ctx context.Context, t testing.TB, node *redis.Client, addr string, nodes int) {
	t.Helper()
	want := []string{
		"cluster_state:ok",
		"cluster_slots_ok:16384",
		"cluster_known_nodes:" + strconv.Itoa(nodes),
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
