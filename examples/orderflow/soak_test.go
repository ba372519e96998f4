package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// The soak run (issue #16): the order flow under steady load for a long
// time, every process sampled every 10 s (RSS, heap, goroutines, open
// descriptors and connections).
//
//	make soak                               # WMOBS_SOAK=1: 30 minutes, RSS and goroutines flat
//	make soak SOAK_DURATION=10m             # shorter (WMOBS_SOAK_DURATION)
//	make test-integration                   # WMOBS_FULL=1: 60 s, back to the baseline after the load
//
// WMOBS_SOAK_OUT names a CSV file for the samples.

// soakConfig is what a soak run does.
type soakConfig struct {
	// duration is how long orders are placed.
	duration time.Duration
	// interval is the sampling interval.
	interval time.Duration
	// orderInterval spaces the orders: a steady 10 orders per second.
	orderInterval time.Duration
	// batch is how long one api process places orders; a new api starts
	// every batch, so that the orders flow without a pause (see TestSoak).
	batch time.Duration
	// flat asks for the flatness check of the long run.
	flat bool
	out  string
}

// soakMinFlat is the shortest run the flatness check means something for.
const soakMinFlat = 5 * time.Minute

func soakConfigFromEnv(t *testing.T) soakConfig {
	cfg := soakConfig{interval: 10 * time.Second, orderInterval: 100 * time.Millisecond, batch: 30 * time.Second, out: os.Getenv("WMOBS_SOAK_OUT")}
	switch {
	case os.Getenv("WMOBS_SOAK") == "1":
		cfg.duration, cfg.flat = 30*time.Minute, true
	case testsvc.Full():
		cfg.duration = time.Minute // make test-integration
	default:
		t.Skip("the soak run is opt-in: make soak (WMOBS_SOAK=1, 30 minutes), or its 60 s form in make test-integration (WMOBS_FULL=1)")
	}
	if v := os.Getenv("WMOBS_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < cfg.batch {
			t.Fatalf("WMOBS_SOAK_DURATION=%q: want a duration of at least %s", v, cfg.batch)
		}
		cfg.duration = d
	}
	if cfg.flat && cfg.duration < soakMinFlat {
		t.Logf("a %s run is too short for the flatness check (at least %s): only the return to the baseline is checked", cfg.duration, soakMinFlat)
		cfg.flat = false
	}
	return cfg
}

const soakWorkers = 2

// soakProc is one process of the run.
type soakProc struct {
	*process
	label   string // "worker 1", "api 3"
	metrics string // its /metrics address
}

// soakRun is the state of a run the driver and the sampler share.
type soakRun struct {
	t       *testing.T
	cfg     soakConfig
	redis   *soakRedis
	pgAdmin *sql.DB
	appName string
	pgPort  int
	sampler *redis.Client
	start   time.Time // the first order

	mu      sync.Mutex
	live    []*soakProc
	samples []soakSample
	phase   string
}

// TestSoak runs two workers for the whole run and, on a fixed schedule, an
// api process every cfg.batch, each placing the orders of its batch at
// cfg.orderInterval (the api keeps every span and order of its run for its
// report, so one api for 30 minutes would grow by design; a new one each
// batch keeps the load steady, the api of one batch waiting for its last
// orders while the next places its first). The workers, which run
// throughout, are the processes the checks are about.
func TestSoak(t *testing.T) {
	cfg := soakConfigFromEnv(t)
	r := &soakRun{t: t, cfg: cfg, phase: "idle"}
	r.redis = startSoakRedis(t)
	r.sampler = redis.NewClient(&redis.Options{Addr: r.redis.addr(), PoolSize: 1})
	t.Cleanup(func() { _ = r.sampler.Close() })
	db, schema := testsvc.Postgres(t)
	r.pgAdmin = db
	r.appName = "orderflow_soak_" + schema
	r.pgPort = postgresPort(testsvc.PostgresDSN())
	env := cleanEnv("REDIS_ADDR=" + r.redis.addr())
	apiEnv := append(slices.Clone(env), "POSTGRES_DSN="+withAppName(testsvc.DSNWithSearchPath(testsvc.PostgresDSN(), schema), r.appName))
	args := []string{"-prefix", "soak:", "-payment-timeout", "2s"}
	perBatch := int(cfg.batch / cfg.orderInterval)
	t.Logf("soak: %s of orders, %d per %s api run (one every %s), samples every %s", cfg.duration, perBatch, cfg.batch, cfg.orderInterval, cfg.interval)

	var workers []*soakProc
	for i := range soakWorkers {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		w := &soakProc{label: fmt.Sprintf("worker %d", i+1), metrics: addr}
		w.process = start(t, w.label, env, append([]string{"-role", "worker", "-metrics-addr", addr}, args...)...)
		w.waitLog(t, "orderflow running", 30*time.Second)
		workers = append(workers, w)
		r.add(w)
	}

	// The baseline: idle workers, before the first order.
	time.Sleep(3 * time.Second)
	baseline := r.settledSample(workers, "baseline")
	t.Logf("baseline: %s", baseline)

	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	r.start = time.Now()
	r.setPhase("load")
	sampling.Go(func() { r.sampleEvery(stopSampling) })

	// The load: an api every cfg.batch until cfg.duration.
	type apiRun struct {
		p      *soakProc
		orders int
		err    error
	}
	var (
		apis   []*apiRun
		apisWG sync.WaitGroup
	)
	for i := 0; ; i++ {
		at := r.start.Add(time.Duration(i) * cfg.batch)
		if at.Sub(r.start) >= cfg.duration {
			break
		}
		time.Sleep(time.Until(at))
		orders := min(perBatch, int((cfg.duration-at.Sub(r.start))/cfg.orderInterval))
		if orders < 1 {
			break
		}
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		a := &apiRun{orders: orders, p: &soakProc{label: fmt.Sprintf("api %d", i+1), metrics: addr}}
		a.p.process = start(t, a.p.label, apiEnv, append([]string{"-role", "api", "-orders", strconv.Itoa(orders),
			"-order-interval", cfg.orderInterval.String(), "-timeout", "120s", "-metrics-addr", addr}, args...)...)
		r.add(a.p)
		apis = append(apis, a)
		apisWG.Go(func() {
			select {
			case a.err = <-a.p.done:
			case <-time.After(cfg.batch + 5*time.Minute):
				_ = a.p.cmd.Process.Kill()
				a.err = <-a.p.done
				a.err = fmt.Errorf("still running after %s, killed (%v)", cfg.batch+5*time.Minute, a.err)
			}
			r.remove(a.p)
		})
	}
	apisWG.Wait()
	loadEnd := time.Since(r.start)
	r.setPhase("settle")

	var placed int
	states := map[string]int{}
	for _, a := range apis {
		out := a.p.stdout.String()
		placed += strings.Count(out, `"msg":"order placed"`)
		if a.err != nil {
			t.Errorf("%s (%d orders): %v\nstderr:\n%s\nstdout (end):\n%s", a.p.label, a.orders, a.err, a.p.stderr, tail(out, 30))
			continue
		}
		for k, n := range parseReport(t, out).states {
			states[k] += n
		}
	}
	t.Logf("load over after %s: %d api runs, %d orders placed, final states %v", loadEnd.Round(time.Second), len(apis), placed, states)

	// Settled: the workers' goroutines and connections back where they
	// were, within soakSettleLimit.
	settled, settleErr := r.waitSettled(workers, baseline)
	close(stopSampling)
	sampling.Wait()
	t.Logf("settled: %s", settled)
	var backends int
	if err := r.pgAdmin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, r.appName).Scan(&backends); err != nil {
		t.Error(err)
	} else if backends != 0 {
		settleErr = append(settleErr, fmt.Sprintf("%d PostgreSQL backends of the api runs left after they exited", backends))
	}
	for _, w := range workers {
		w.stop(t)
	}

	samples := r.allSamples()
	if cfg.out != "" {
		if err := writeSoakCSV(cfg.out, samples); err != nil {
			t.Errorf("WMOBS_SOAK_OUT: %v", err)
		} else {
			t.Logf("samples written to %s", cfg.out)
		}
	}
	sum := summarize(samples, workerLabels(workers), loadEnd, cfg)
	t.Log("\n" + sum.String())
	for _, e := range settleErr {
		t.Error(e)
	}
	if cfg.flat {
		for _, e := range sum.flatFailures() {
			t.Error(e)
		}
	}
}

func workerLabels(ws []*soakProc) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.label)
	}
	return out
}

func (r *soakRun) add(p *soakProc) {
	r.mu.Lock()
	r.live = append(r.live, p)
	r.mu.Unlock()
}

func (r *soakRun) remove(p *soakProc) {
	r.mu.Lock()
	r.live = slices.DeleteFunc(r.live, func(q *soakProc) bool { return q == p })
	r.mu.Unlock()
}

func (r *soakRun) setPhase(phase string) {
	r.mu.Lock()
	r.phase = phase
	r.mu.Unlock()
}

func (r *soakRun) allSamples() []soakSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.samples)
}

// sampleEvery samples every live process each cfg.interval until stop,
// and logs a line per round.
func (r *soakRun) sampleEvery(stop <-chan struct{}) {
	tick := time.NewTicker(r.cfg.interval)
	defer tick.Stop()
	for {
		r.sampleRound()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func (r *soakRun) sampleRound() {
	r.mu.Lock()
	live, phase := slices.Clone(r.live), r.phase
	r.mu.Unlock()
	at := time.Since(r.start)
	var round []soakSample
	for _, p := range live {
		s, err := r.sampleProc(p)
		if err != nil {
			continue // an api exiting between the list and the sample
		}
		s.at, s.phase = at, phase
		round = append(round, s)
	}
	// The servers: redis-server's RSS and its clients (the sampler's
	// aside), the api's PostgreSQL backends.
	if rss, err := readRSS(r.redis.cmd.Process.Pid); err == nil {
		s := soakSample{at: at, phase: phase, proc: "redis-server", rss: rss, goroutines: -1, heap: -1, serverClients: -1}
		if clients, err := r.sampler.ClientList(r.t.Context()).Result(); err == nil {
			s.serverClients = strings.Count(clients, "\n") - 1
		}
		round = append(round, s)
	}
	pg := soakSample{at: at, phase: phase, proc: "postgres", goroutines: -1, heap: -1, serverClients: -1}
	_ = r.pgAdmin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, r.appName).Scan(&pg.serverClients)
	round = append(round, pg)
	r.mu.Lock()
	r.samples = append(r.samples, round...)
	r.mu.Unlock()
	var parts []string
	for _, s := range round {
		if strings.HasPrefix(s.proc, "worker") {
			parts = append(parts, fmt.Sprintf("%s rss %.1fMiB heap %.1fMiB gr %d fds %d redis %d", s.proc, mb(s.rss), mb(s.heap), s.goroutines, s.fds, s.redisConns))
		}
	}
	r.t.Logf("soak %5s %-6s %d processes: %s", at.Round(time.Second), phase, len(round), strings.Join(parts, "; "))
}

// sampleProc reads one process: /proc first, then its /metrics (whose
// scrape opens a connection of its own).
func (r *soakRun) sampleProc(p *soakProc) (soakSample, error) {
	pid := p.cmd.Process.Pid
	s := soakSample{proc: p.label, pid: pid}
	var err error
	if s.rss, err = readRSS(pid); err != nil {
		return s, err
	}
	if s.cpu, err = readCPU(pid); err != nil {
		return s, err
	}
	socks, fds, err := processSockets(pid)
	if err != nil {
		return s, err
	}
	s.fds = fds
	s.sockets = len(socks)
	conns := classifySockets(socks, r.redis.port, r.pgPort)
	s.redisConns, s.pgConns, s.otherSockets = conns.redis, conns.pg, conns.other
	m, err := scrapeMetrics(p.metrics, "go_goroutines", "go_memstats_heap_alloc_bytes")
	if err != nil {
		return s, err
	}
	s.goroutines, s.heap = int(m["go_goroutines"]), int64(m["go_memstats_heap_alloc_bytes"])
	return s, nil
}

// soakSettleLimit is how long the workers get to settle once the load
// stopped.
const soakSettleLimit = 60 * time.Second

// The tolerances of the return to the baseline (see settleProblems).
const (
	soakGoroutineSlack = 3
	soakSocketSlack    = 1
)

// soakRedisPool is the most connections a worker keeps to Redis: go-redis's
// main pool (PoolSize, 10 per GOMAXPROCS, which the workers share with this
// test on one machine) and the pool it keeps for pipelines (at most
// DefaultPipelinePoolSize more). A 30-minute soak saw a worker level off at
// 23, over the main pool alone.
var soakRedisPool = 10*runtime.GOMAXPROCS(0) + redis.DefaultPipelinePoolSize

// settledSample is the median of ten samples of the workers 500 ms apart.
func (r *soakRun) settledSample(workers []*soakProc, label string) workerState {
	var rounds []workerState
	for i := range 10 {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		st := workerState{label: label, at: time.Since(r.start), procs: map[string]soakSample{}}
		for _, w := range workers {
			s, err := r.sampleProc(w)
			if err != nil {
				r.t.Fatalf("sampling %s: %v", w.label, err)
			}
			st.procs[w.label] = s
		}
		rounds = append(rounds, st)
	}
	return medianState(rounds)
}

// waitSettled samples the workers until their goroutines and connections
// are back at the baseline (see settleProblems), or soakSettleLimit passed;
// then once more 5 s later, which must hold too.
func (r *soakRun) waitSettled(workers []*soakProc, baseline workerState) (workerState, []string) {
	deadline := time.Now().Add(soakSettleLimit)
	stopped := time.Now()
	for {
		s := r.settledSample(workers, "settled")
		problems := settleProblems(baseline, s)
		if len(problems) == 0 {
			time.Sleep(5 * time.Second)
			again := r.settledSample(workers, "settled")
			again.label = fmt.Sprintf("settled %s after the load", time.Since(stopped).Round(time.Second))
			return again, settleProblems(baseline, again)
		}
		if time.Now().After(deadline) {
			s.label = fmt.Sprintf("not settled %s after the load", time.Since(stopped).Round(time.Second))
			return s, problems
		}
		time.Sleep(2 * time.Second)
	}
}

// settleProblems compares settled workers with the idle baseline, each the
// median of ten samples over 5 s.
//
// Goroutines: an idle worker's are its subscribers' loops, the router,
// the saga recovery, the projection worker and the metrics server, the
// same after the load; but some come and go (each Redis Streams
// subscriber starts its claim and consumer check loops every second): 60
// scrapes of an idle worker 100 ms apart read 69 to 74. The settled
// median may exceed the idle one by soakGoroutineSlack, half that spread;
// a goroutine left behind per order, message or api run would be tens or
// hundreds over it.
//
// Sockets other than Redis (the metrics listener; the sampler's scrape
// closes its connection, keep-alive off) come back within soakSocketSlack,
// descriptors other than sockets exactly. The Redis connections need not:
// go-redis keeps an idle connection in its pool for 30 minutes
// (ConnMaxIdleTime), so what the load opened stays open; they must stay
// within the pool (soakRedisPool).
func settleProblems(baseline, settled workerState) []string {
	var out []string
	for name, b := range baseline.procs {
		s, ok := settled.procs[name]
		if !ok {
			out = append(out, name+": not sampled settled")
			continue
		}
		if s.goroutines > b.goroutines+soakGoroutineSlack {
			out = append(out, fmt.Sprintf("%s: %d goroutines settled, %d idle before the load", name, s.goroutines, b.goroutines))
		}
		if s.otherSockets > b.otherSockets+soakSocketSlack {
			out = append(out, fmt.Sprintf("%s: %d sockets (Redis aside) settled, %d idle before the load", name, s.otherSockets, b.otherSockets))
		}
		if s.redisConns > soakRedisPool {
			out = append(out, fmt.Sprintf("%s: %d connections to Redis settled, more than the pool's %d", name, s.redisConns, soakRedisPool))
		}
		if s.fds-s.sockets > b.fds-b.sockets {
			out = append(out, fmt.Sprintf("%s: %d descriptors other than sockets settled, %d idle before the load", name, s.fds-s.sockets, b.fds-b.sockets))
		}
	}
	return out
}

// soakRedis is the run's own redis-server, without persistence: the soak
// is about the processes' memory, and an fsync per write would make
// Redis the bottleneck.
type soakRedis struct {
	port int
	cmd  *exec.Cmd
	log  *syncBuffer
}

func startSoakRedis(t *testing.T) *soakRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("the soak run needs redis-server on PATH (Debian: apt-get install redis-server): %v", err)
	}
	r := &soakRedis{port: freePort(t), log: &syncBuffer{}}
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--appendonly", "no", "--save", "", "--dir", t.TempDir(), "--protected-mode", "no")
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("cannot start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); <-done })
	client := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer client.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s does not answer: %v\n%s", r.addr(), err, r.log)
		}
	}
}

func (r *soakRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }
