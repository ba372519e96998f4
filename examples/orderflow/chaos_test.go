package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// The chaos run (issue #16): the order flow over real Redis and
// PostgreSQL, one api and three workers, while a seeded driver injects
// faults; then a checker reads what happened.
//
//	make chaos                                  # the long run: WMOBS_CHAOS=1, 24 faults
//	WMOBS_CHAOS=1 WMOBS_CHAOS_SEED=42 make chaos  # replay a seed's schedule
//	make chaos-cluster                          # the long run on a Redis Cluster (TestChaosCluster)
//	make test-integration                       # the shortened runs (6 faults) with the rest
//
// WMOBS_CHAOS_FAULTS sets the number of faults (at least one per kind).
//
// TestChaosCluster is the same run on a Redis Cluster of three masters
// with a replica each (every node on its append-only file, appendfsync
// always), each node behind a proxy of its own; its faults are the same
// but for the Redis restart, replaced by the SIGKILL of a master: its
// replica takes over, the killed node is started again and rejoins as a
// replica.

// The fault kinds.
const (
	faultWorkerKill   = "worker-kill"   // SIGKILL of a worker, then a new one in its place
	faultRedisRestart = "redis-restart" // SIGKILL of redis-server, then a restart on its AOF
	faultPGTerminate  = "pg-terminate"  // pg_terminate_backend of the api's connections
	faultOTLPOutage   = "otlp-outage"   // the OTLP receiver stops listening, then listens again
	faultSentry       = "sentry"        // the Sentry DSN answers 500s, then times out, then recovers
	faultNetDelay     = "net-delay"     // latency on every Redis connection, then every one cut
	faultMasterKill   = "master-kill"   // SIGKILL of a cluster master, its replica promoted, the node restarted
)

// The fault kinds of a run on one Redis, and on a Redis Cluster.
var (
	faultKinds        = []string{faultWorkerKill, faultRedisRestart, faultPGTerminate, faultOTLPOutage, faultSentry, faultNetDelay}
	clusterFaultKinds = []string{faultWorkerKill, faultMasterKill, faultPGTerminate, faultOTLPOutage, faultSentry, faultNetDelay}
)

// clusterNodeTimeout is the cluster-node-timeout of the chaos cluster: a
// master unreachable this long is failed over.
const clusterNodeTimeout = 2 * time.Second

const chaosWorkers = 3

// chaosConfig is what a chaos run does.
type chaosConfig struct {
	seed   uint64
	faults int
	// kinds are the fault kinds drawn: faultKinds, or clusterFaultKinds
	// on a Redis Cluster.
	kinds   []string
	cluster bool
	// orderInterval spaces the api's orders.
	orderInterval  time.Duration
	paymentTimeout time.Duration
}

func chaosConfigFromEnv(t *testing.T, cluster bool) chaosConfig {
	cfg := chaosConfig{faults: 24, kinds: faultKinds, cluster: cluster, orderInterval: 250 * time.Millisecond, paymentTimeout: 10 * time.Second}
	if cluster {
		cfg.kinds = clusterFaultKinds
	}
	switch {
	case os.Getenv("WMOBS_CHAOS") == "1":
	case testsvc.Full():
		cfg.faults = len(cfg.kinds) // the shortened run of make test-integration
	default:
		t.Skip("the chaos run is opt-in: make chaos or make chaos-cluster (WMOBS_CHAOS=1), or its shortened form in make test-integration (WMOBS_FULL=1)")
	}
	if v := os.Getenv("WMOBS_CHAOS_FAULTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < len(cfg.kinds) {
			t.Fatalf("WMOBS_CHAOS_FAULTS=%q: want a number of at least %d (one per kind)", v, len(cfg.kinds))
		}
		cfg.faults = n
	}
	cfg.seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("WMOBS_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("WMOBS_CHAOS_SEED=%q: want an unsigned integer", v)
		}
		cfg.seed = n
	}
	return cfg
}

// fault is one planned fault: its kind, the pause before it and how long
// it lasts.
type fault struct {
	kind  string
	after time.Duration // pause before it starts
	hold  time.Duration // how long the broken state lasts
	// hold2 is the timing-out phase of a Sentry fault, the latency of a
	// network delay.
	hold2  time.Duration
	worker int // the worker slot a kill hits; the master a master kill hits
}

// plan draws the schedule of a run from its seed: every kind as evenly as
// the number allows (at least once each), in a shuffled order.
func plan(cfg chaosConfig) []fault {
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15))
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var kinds []string
	for i := range cfg.faults {
		kinds = append(kinds, cfg.kinds[i%len(cfg.kinds)])
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	faults := make([]fault, 0, len(kinds))
	for _, k := range kinds {
		f := fault{kind: k, after: dur(time.Second, 2500*time.Millisecond)}
		switch k {
		case faultWorkerKill:
			f.worker, f.hold = rng.IntN(chaosWorkers), dur(500*time.Millisecond, 2*time.Second)
		case faultRedisRestart:
			f.hold = dur(300*time.Millisecond, 1500*time.Millisecond)
		case faultMasterKill:
			// The hold runs from the failover to the restart.
			f.worker, f.hold = rng.IntN(3), dur(300*time.Millisecond, 1500*time.Millisecond)
		case faultPGTerminate:
			f.hold = dur(200*time.Millisecond, 800*time.Millisecond) // a second termination after it
		case faultOTLPOutage:
			f.hold = dur(2*time.Second, 4*time.Second)
		case faultSentry:
			f.hold, f.hold2 = dur(1500*time.Millisecond, 3*time.Second), dur(1500*time.Millisecond, 3*time.Second)
		case faultNetDelay:
			f.hold, f.hold2 = dur(2*time.Second, 4*time.Second), dur(20*time.Millisecond, 150*time.Millisecond)
		}
		faults = append(faults, f)
	}
	return faults
}

// plannedDuration is how long the schedule takes, the restarts aside.
func plannedDuration(faults []fault) time.Duration {
	var d time.Duration
	for _, f := range faults {
		d += f.after + f.hold + f.hold2
	}
	return d
}

// chaosProc is one process of the run, alive or not.
type chaosProc struct {
	*process
	role    string
	slot    int    // worker slot, -1 for the api
	name    string // its process name in the logs (worker-1a2b3c)
	metrics string // its /metrics address
	killed  time.Time
}

// chaosRun is the state of a run the driver and the checker share.
type chaosRun struct {
	t     *testing.T
	cfg   chaosConfig
	redis *chaosRedis // nil on a cluster
	// cluster is the Redis Cluster of TestChaosCluster, nil on one Redis.
	cluster *testsvc.Cluster
	// proxies front the Redis server, or each node of the cluster.
	proxies proxies
	otlp    *otlpReceiver
	sentry  *fakeSentry
	pgAdmin *sql.DB
	appName string // application_name of the api's PostgreSQL connections
	env     []string
	args    []string

	mu      sync.Mutex
	procs   []*chaosProc // every process ever started
	workers [chaosWorkers]*chaosProc
	// the windows the OTLP endpoint was down.
	otlpDown [][2]time.Time
	// done counts the faults injected, by kind.
	done       map[string]int
	pgKilled   int // backends terminated
	proxyCuts  int
	failovers  []failover
	faultLog   []string
	workerPort [chaosWorkers]int
}

// failover is one master kill of a cluster run.
type failover struct {
	// took is from the SIGKILL to the replica serving the slots with the
	// cluster ok; rejoined from the restart to every replica in sync.
	took, rejoined time.Duration
}

func TestChaos(t *testing.T) { runChaos(t, chaosConfigFromEnv(t, false)) }

func TestChaosCluster(t *testing.T) { runChaos(t, chaosConfigFromEnv(t, true)) }

func runChaos(t *testing.T, cfg chaosConfig) {
	faults := plan(cfg)
	orders := int((plannedDuration(faults)+3*time.Second)/cfg.orderInterval) + 1
	target, test := "chaos", "TestChaos"
	if cfg.cluster {
		target, test = "chaos-cluster", "TestChaosCluster"
	}
	t.Logf("chaos seed %d: %d faults, %d orders (replay the schedule: make %s CHAOS_SEED=%d CHAOS_FAULTS=%d, or WMOBS_CHAOS=1 WMOBS_CHAOS_SEED=%d WMOBS_CHAOS_FAULTS=%d go test -run '^%s$' ./examples/orderflow)",
		cfg.seed, len(faults), orders, target, cfg.seed, len(faults), cfg.seed, len(faults), test)

	r := &chaosRun{t: t, cfg: cfg, done: map[string]int{}}
	var redisAddr string
	if cfg.cluster {
		start := time.Now()
		r.cluster = testsvc.StartRedisCluster(t, testsvc.ClusterConfig{Replicas: 1, AppendOnly: true, NodeTimeout: clusterNodeTimeout,
			Announce: func(addr string) string {
				p := startProxy(t, addr)
				r.proxies = append(r.proxies, p)
				return p.addr()
			}})
		var seeds []string
		for _, n := range r.cluster.Nodes {
			seeds = append(seeds, n.Announced)
		}
		redisAddr = strings.Join(seeds, ",")
		t.Logf("Redis Cluster of %d nodes (3 masters, a replica each) ready in %s", len(r.cluster.Nodes), time.Since(start).Round(time.Millisecond))
	} else {
		r.redis = startChaosRedis(t)
		r.proxies = proxies{startProxy(t, r.redis.addr())}
		redisAddr = r.proxies[0].addr()
	}
	r.otlp = startOTLPReceiver(t)
	r.sentry = startFakeSentry(t)
	db, schema := testsvc.Postgres(t)
	r.pgAdmin = db
	r.appName = "orderflow_chaos_" + schema
	const prefix = "chaos:"
	r.env = cleanEnv(
		"REDIS_ADDR="+redisAddr,
		"SENTRY_DSN="+r.sentry.dsn(),
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+r.otlp.endpoint(),
		"OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_SERVICE_NAME=orderflow",
	)
	r.args = []string{"-prefix", prefix, "-payment-timeout", cfg.paymentTimeout.String()}

	for i := range chaosWorkers {
		r.workerPort[i] = freePort(t)
		r.startWorker(i)
	}
	time.Sleep(2 * time.Second)
	baseline := r.sample("idle, before the first order")

	apiEnv := append(slices.Clone(r.env), "POSTGRES_DSN="+withAppName(testsvc.DSNWithSearchPath(testsvc.PostgresDSN(), schema), r.appName))
	api := &chaosProc{role: roleAPI, slot: -1}
	api.process = start(t, "api", apiEnv, append([]string{"-role", "api", "-orders", strconv.Itoa(orders),
		"-order-interval", cfg.orderInterval.String(), "-timeout", "180s"}, r.args...)...)
	r.mu.Lock()
	r.procs = append(r.procs, api)
	r.mu.Unlock()
	api.waitLog(t, "orderflow running", 30*time.Second)
	api.name = processName(api.stdout.String())

	time.Sleep(2 * time.Second) // orders flowing before the first fault
	for i, f := range faults {
		time.Sleep(f.after)
		r.inject(i, f)
	}
	t.Logf("faults done: %v", r.done)

	if err := api.wait(t, 5*time.Minute); err != nil {
		t.Errorf("api: %v\nstderr:\n%s\nstdout (end):\n%s", err, api.stderr, tail(api.stdout.String(), 40))
	}

	// Settled: no order in flight, every fault repaired.
	time.Sleep(3 * time.Second)
	settled1 := r.sample("settled")
	time.Sleep(5 * time.Second)
	settled2 := r.sample("settled, 5s later")
	for _, w := range r.liveWorkers() {
		w.stop(t)
	}
	time.Sleep(500 * time.Millisecond)

	h := r.history(t, prefix)
	res := check(h, r)
	res.faults, res.seed = r.done, cfg.seed
	res.growth = checkGrowth(baseline, settled1, settled2)
	for _, s := range []sample{baseline, settled1, settled2} {
		t.Logf("%s: goroutines %v, sockets %v, %d connections to Redis, %d PostgreSQL backends", s.label, s.goroutines, s.sockets, s.proxied, s.pgBackends)
	}
	t.Log(res.String())
	if cfg.cluster {
		t.Log(r.failoverSummary())
	}
	for _, line := range r.faultLog {
		t.Log("fault " + line)
	}
	for _, f := range res.failures() {
		t.Error(f)
	}
	for _, k := range cfg.kinds {
		want := 1
		if cfg.faults >= 2*len(cfg.kinds) {
			want = 2
		}
		if r.done[k] < want {
			t.Errorf("fault %s injected %d times, want at least %d", k, r.done[k], want)
		}
	}
	if dir := os.Getenv("WMOBS_CHAOS_ARTIFACTS"); dir != "" {
		r.saveLogs(t, dir)
	}
}

// withAppName sets application_name in a DSN, so that the driver
// terminates this run's backends only.
func withAppName(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("application_name", name)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " application_name=" + name
}

// processName reads the process name from the "orderflow running" record.
func processName(stdout string) string {
	for line := range logLines(stdout) {
		var rec struct{ Msg, Process string }
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "orderflow running" {
			return rec.Process
		}
	}
	return ""
}

func (r *chaosRun) startWorker(slot int) {
	r.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(r.workerPort[slot])
	w := &chaosProc{role: roleWorker, slot: slot, metrics: addr}
	w.process = start(r.t, fmt.Sprintf("worker %d", slot+1), r.env,
		append([]string{"-role", "worker", "-metrics-addr", addr}, r.args...)...)
	w.waitLog(r.t, "orderflow running", 30*time.Second)
	w.name = processName(w.stdout.String())
	r.mu.Lock()
	r.procs = append(r.procs, w)
	r.workers[slot] = w
	r.mu.Unlock()
}

func (r *chaosRun) liveWorkers() []*chaosProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*chaosProc
	for _, w := range r.workers {
		if w != nil {
			out = append(out, w)
		}
	}
	return out
}

// inject runs fault i to its end: broken, held, repaired.
func (r *chaosRun) inject(i int, f fault) {
	t := r.t
	at := time.Now()
	var what string
	switch f.kind {
	case faultWorkerKill:
		w := r.workers[f.worker]
		_ = w.cmd.Process.Kill() // SIGKILL: no flush, no ack, nothing
		<-w.done
		w.killed = time.Now()
		r.mu.Lock()
		r.workers[f.worker] = nil
		r.mu.Unlock()
		time.Sleep(f.hold)
		r.startWorker(f.worker)
		what = fmt.Sprintf("killed %s, started %s after %s", w.name, r.workers[f.worker].name, f.hold)
	case faultRedisRestart:
		r.redis.kill()
		time.Sleep(f.hold)
		r.redis.start()
		what = fmt.Sprintf("redis-server down for %s", f.hold)
	case faultPGTerminate:
		n := r.terminateBackends()
		time.Sleep(f.hold)
		n += r.terminateBackends()
		what = fmt.Sprintf("%d backends terminated, twice %s apart", n, f.hold)
	case faultOTLPOutage:
		r.otlp.stop()
		time.Sleep(f.hold)
		if err := r.otlp.up(); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		r.otlpDown = append(r.otlpDown, [2]time.Time{at, time.Now()})
		r.mu.Unlock()
		what = fmt.Sprintf("OTLP endpoint down for %s", f.hold)
	case faultSentry:
		r.sentry.setMode(sentryFailing)
		time.Sleep(f.hold)
		r.sentry.setMode(sentryTimeout)
		time.Sleep(f.hold2)
		r.sentry.setMode(sentryOK)
		what = fmt.Sprintf("Sentry 500s for %s, then timing out for %s", f.hold, f.hold2)
	case faultMasterKill:
		what = r.killMaster(f)
	case faultNetDelay:
		r.proxies.setDelay(f.hold2)
		time.Sleep(f.hold)
		n := r.proxies.cut()
		r.proxies.setDelay(0)
		r.mu.Lock()
		r.proxyCuts += n
		r.mu.Unlock()
		what = fmt.Sprintf("%s latency per chunk for %s, then %d connections cut", f.hold2, f.hold, n)
	}
	r.mu.Lock()
	r.done[f.kind]++
	r.faultLog = append(r.faultLog, fmt.Sprintf("%2d %-13s at %s: %s", i+1, f.kind, at.Format("15:04:05.000"), what))
	r.mu.Unlock()
}

// killMaster kills a master of the cluster with SIGKILL (the cluster
// ready before: every replica in sync), waits until its replica serves
// its slots, starts the killed node again after the hold and waits until
// it is back as a replica in sync.
func (r *chaosRun) killMaster(f fault) string {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.cluster.WaitReady(ctx); err != nil {
		t.Fatalf("master-kill: the cluster is not ready before it: %v", err)
	}
	masters := r.cluster.Masters(ctx)
	if len(masters) != 3 {
		t.Fatalf("master-kill: %d masters, want 3", len(masters))
	}
	victim := masters[f.worker]
	killedAt := time.Now()
	promoted, err := r.cluster.FailOver(ctx, victim)
	if err != nil {
		t.Fatalf("master-kill: %v", err)
	}
	took := time.Since(killedAt)
	time.Sleep(f.hold)
	restartedAt := time.Now()
	if err := victim.Restart(ctx); err != nil {
		t.Fatalf("master-kill: restarting %s: %v", victim.Addr, err)
	}
	if err := r.cluster.WaitReady(ctx); err != nil {
		t.Fatalf("master-kill: %s restarted, the cluster not ready: %v", victim.Addr, err)
	}
	rejoined := time.Since(restartedAt)
	if role := victim.Role(ctx); role != "replica" {
		t.Errorf("master-kill: %s restarted as %q, want a replica", victim.Addr, role)
	}
	r.mu.Lock()
	r.failovers = append(r.failovers, failover{took: took, rejoined: rejoined})
	r.mu.Unlock()
	return fmt.Sprintf("SIGKILL of master %s; replica %s took over after %s; the node restarted %s later, a replica in sync after %s",
		victim.Addr, promoted.Addr, took.Round(time.Millisecond), f.hold, rejoined.Round(time.Millisecond))
}

// failoverSummary sums the master kills up.
func (r *chaosRun) failoverSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failovers) == 0 {
		return "no failover"
	}
	lo, hi := r.failovers[0], r.failovers[0]
	for _, f := range r.failovers {
		lo.took, hi.took = min(lo.took, f.took), max(hi.took, f.took)
		lo.rejoined, hi.rejoined = min(lo.rejoined, f.rejoined), max(hi.rejoined, f.rejoined)
	}
	return fmt.Sprintf("%d failovers: the replica serving the slots %s-%s after the SIGKILL; the restarted node in sync %s-%s after its start",
		len(r.failovers), lo.took.Round(time.Millisecond), hi.took.Round(time.Millisecond),
		lo.rejoined.Round(time.Millisecond), hi.rejoined.Round(time.Millisecond))
}

// terminateBackends ends the api's PostgreSQL connections, found by their
// application_name.
func (r *chaosRun) terminateBackends() int {
	var n int
	err := r.pgAdmin.QueryRow(`SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t`, r.appName).Scan(&n)
	if err != nil {
		r.t.Errorf("pg_terminate_backend: %v", err)
	}
	r.mu.Lock()
	r.pgKilled += n
	r.mu.Unlock()
	return n
}

// sample is what the live workers hold at one moment: goroutines (their
// go_goroutines) and open sockets (from /proc), and the connections
// through the proxy.
type sample struct {
	label      string
	goroutines map[string]int // by process name
	sockets    map[string]int
	proxied    int
	pgBackends int
}

func (r *chaosRun) sample(label string) sample {
	s := sample{label: label, goroutines: map[string]int{}, sockets: map[string]int{}, proxied: r.proxies.open()}
	for _, w := range r.liveWorkers() {
		s.goroutines[w.name] = scrapeGoroutines(r.t, w.metrics)
		s.sockets[w.name] = countSockets(w.cmd.Process.Pid)
	}
	_ = r.pgAdmin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, r.appName).Scan(&s.pgBackends)
	return s
}

// scrapeGoroutines reads go_goroutines at addr three times, 100 ms apart,
// and returns the least: a scrape counts the goroutines of the scrape
// itself (the registry gathers its collectors concurrently, and the
// projection's lag collector asks Redis), which a leak is not.
func scrapeGoroutines(t *testing.T, addr string) int {
	n := -1
	for i := range 3 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		g := scrapeGoroutinesOnce(t, addr)
		if g >= 0 && (n < 0 || g < n) {
			n = g
		}
	}
	return n
}

func scrapeGoroutinesOnce(t *testing.T, addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Errorf("scraping %s: %v", addr, err)
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Errorf("no go_goroutines at %s", addr)
	return -1
}

func countSockets(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	var n int
	for _, e := range entries {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// saveLogs writes every process's output into dir, for a failed run.
func (r *chaosRun) saveLogs(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Log(err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.procs {
		name := fmt.Sprintf("%02d-%s", i, p.name)
		_ = os.WriteFile(filepath.Join(dir, name+".stdout"), []byte(p.stdout.String()), 0o644)
		_ = os.WriteFile(filepath.Join(dir, name+".stderr"), []byte(p.stderr.String()), 0o644)
	}
	if r.redis != nil {
		_ = os.WriteFile(filepath.Join(dir, "redis-server.log"), []byte(r.redis.log.String()), 0o644)
	}
	if r.cluster != nil {
		for _, n := range r.cluster.Nodes {
			_ = os.WriteFile(filepath.Join(dir, "redis-"+strings.ReplaceAll(n.Addr, ":", "-")+".log"), []byte(n.Log()), 0o644)
		}
	}
}

// TestChaosPlan: a seed draws one schedule, every kind as often as the
// number of faults allows.
func TestChaosPlan(t *testing.T) {
	for _, kinds := range [][]string{faultKinds, clusterFaultKinds} {
		cfg := chaosConfig{seed: 7, faults: 24, kinds: kinds}
		a, b := plan(cfg), plan(cfg)
		if !slices.Equal(a, b) {
			t.Fatal("one seed, two schedules")
		}
		count := map[string]int{}
		for _, f := range a {
			count[f.kind]++
			if f.worker < 0 || f.worker >= chaosWorkers {
				t.Errorf("worker slot %d", f.worker)
			}
		}
		for _, k := range kinds {
			if count[k] != 4 {
				t.Errorf("%s %d times in 24 faults, want 4", k, count[k])
			}
		}
		if other := plan(chaosConfig{seed: 8, faults: 24, kinds: kinds}); slices.Equal(a, other) {
			t.Error("two seeds, one schedule")
		}
	}
}

// TestOrderflow_api_through_redis_restart: the api keeps placing orders
// and waiting for them while its Redis restarts (it used to exit with
// "cannot place order" or "cannot read order ... from the saga store").
func TestOrderflow_api_through_redis_restart(t *testing.T) {
	rs := startChaosRedis(t)
	env := cleanEnv("REDIS_ADDR=" + rs.addr())
	args := []string{"-prefix", "restart:", "-payment-timeout", "2s"}
	w := start(t, "worker", env, append([]string{"-role", "worker"}, args...)...)
	w.waitLog(t, "orderflow running", 30*time.Second)
	api := start(t, "api", env, append([]string{"-role", "api", "-orders", "12", "-order-interval", "150ms", "-timeout", "60s"}, args...)...)
	api.waitLog(t, "order placed", 30*time.Second)
	rs.kill()
	time.Sleep(3 * time.Second) // longer than go-redis's own retries
	rs.start()
	if err := api.wait(t, 90*time.Second); err != nil {
		t.Fatalf("api: %v\nstderr:\n%s\nstdout (end):\n%s", err, api.stderr, tail(api.stdout.String(), 40))
	}
	if out := api.stdout.String(); !strings.Contains(out, `"msg":"cannot place the order; sending it again"`) &&
		!strings.Contains(out, `"msg":"cannot read the order from the saga store"`) {
		t.Errorf("the api met no Redis error: the restart tested nothing\n%s", tail(out, 40))
	}
	w.stop(t)
}
