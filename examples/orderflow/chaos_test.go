package main

import (
	"bufio"
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
//	make test-integration                       # the shortened run (6 faults) with the rest
//
// WMOBS_CHAOS_FAULTS sets the number of faults (at least one per kind).

// The fault kinds.
const (
	faultWorkerKill   = "worker-kill"   // SIGKILL of a worker, then a new one in its place
	faultRedisRestart = "redis-restart" // SIGKILL of redis-server, then a restart on its AOF
	faultPGTerminate  = "pg-terminate"  // pg_terminate_backend of the api's connections
	faultOTLPOutage   = "otlp-outage"   // the OTLP receiver stops listening, then listens again
	faultSentry       = "sentry"        // the Sentry DSN answers 500s, then times out, then recovers
	faultNetDelay     = "net-delay"     // latency on every Redis connection, then every one cut
)

var faultKinds = []string{faultWorkerKill, faultRedisRestart, faultPGTerminate, faultOTLPOutage, faultSentry, faultNetDelay}

const chaosWorkers = 3

// chaosConfig is what a chaos run does.
type chaosConfig struct {
	seed   uint64
	faults int
	// orderInterval spaces the api's orders.
	orderInterval  time.Duration
	paymentTimeout time.Duration
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	cfg := chaosConfig{faults: 24, orderInterval: 250 * time.Millisecond, paymentTimeout: 10 * time.Second}
	switch {
	case os.Getenv("WMOBS_CHAOS") == "1":
	case testsvc.Full():
		cfg.faults = len(faultKinds) // the shortened run of make test-integration
	default:
		t.Skip("the chaos run is opt-in: make chaos (WMOBS_CHAOS=1), or its shortened form in make test-integration (WMOBS_FULL=1)")
	}
	if v := os.Getenv("WMOBS_CHAOS_FAULTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < len(faultKinds) {
			t.Fatalf("WMOBS_CHAOS_FAULTS=%q: want a number of at least %d (one per kind)", v, len(faultKinds))
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
	worker int // the worker slot a kill hits
}

// plan draws the schedule of a run from its seed: every kind as evenly as
// the number allows (at least once each), in a shuffled order.
func plan(cfg chaosConfig) []fault {
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15))
	dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var kinds []string
	for i := range cfg.faults {
		kinds = append(kinds, faultKinds[i%len(faultKinds)])
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
	t       *testing.T
	cfg     chaosConfig
	redis   *chaosRedis
	proxy   *proxy
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
	faultLog   []string
	workerPort [chaosWorkers]int
}

func TestChaos(t *testing.T) {
	cfg := chaosConfigFromEnv(t)
	faults := plan(cfg)
	orders := int((plannedDuration(faults)+3*time.Second)/cfg.orderInterval) + 1
	t.Logf("chaos seed %d: %d faults, %d orders (replay the schedule: WMOBS_CHAOS=1 WMOBS_CHAOS_SEED=%d WMOBS_CHAOS_FAULTS=%d make chaos)",
		cfg.seed, len(faults), orders, cfg.seed, len(faults))

	r := &chaosRun{t: t, cfg: cfg, done: map[string]int{}}
	r.redis = startChaosRedis(t)
	r.proxy = startProxy(t, r.redis.addr())
	r.otlp = startOTLPReceiver(t)
	r.sentry = startFakeSentry(t)
	db, schema := testsvc.Postgres(t)
	r.pgAdmin = db
	r.appName = "orderflow_chaos_" + schema
	const prefix = "chaos:"
	r.env = cleanEnv(
		"REDIS_ADDR="+r.proxy.addr(),
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
	for _, line := range r.faultLog {
		t.Log("fault " + line)
	}
	for _, f := range res.failures() {
		t.Error(f)
	}
	for _, k := range faultKinds {
		want := 1
		if cfg.faults >= 2*len(faultKinds) {
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
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct{ Msg, Process string }
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "orderflow running" {
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
	case faultNetDelay:
		r.proxy.setDelay(f.hold2)
		time.Sleep(f.hold)
		n := r.proxy.cut()
		r.proxy.setDelay(0)
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
	s := sample{label: label, goroutines: map[string]int{}, sockets: map[string]int{}, proxied: r.proxy.open()}
	for _, w := range r.liveWorkers() {
		s.goroutines[w.name] = scrapeGoroutines(r.t, w.metrics)
		s.sockets[w.name] = countSockets(w.cmd.Process.Pid)
	}
	_ = r.pgAdmin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, r.appName).Scan(&s.pgBackends)
	return s
}

func scrapeGoroutines(t *testing.T, addr string) int {
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
	_ = os.WriteFile(filepath.Join(dir, "redis-server.log"), []byte(r.redis.log.String()), 0o644)
}

// TestChaosPlan: a seed draws one schedule, every kind as often as the
// number of faults allows.
func TestChaosPlan(t *testing.T) {
	cfg := chaosConfig{seed: 7, faults: 24}
	a, b := plan(cfg), plan(cfg)
	if !slices.Equal(a, b) {
		t.Fatal("one seed, two schedules")
	}
	kinds := map[string]int{}
	for _, f := range a {
		kinds[f.kind]++
		if f.worker < 0 || f.worker >= chaosWorkers {
			t.Errorf("worker slot %d", f.worker)
		}
	}
	for _, k := range faultKinds {
		if kinds[k] != 4 {
			t.Errorf("%s %d times in 24 faults, want 4", k, kinds[k])
		}
	}
	if other := plan(chaosConfig{seed: 8, faults: 24}); slices.Equal(a, other) {
		t.Error("two seeds, one schedule")
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
