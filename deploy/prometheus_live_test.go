package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// The live test: the demo on real Redis and PostgreSQL, scraped every
// second by a real Prometheus (Debian's package, which
// scripts/install-prometheus.sh installs for make test) that runs
// deploy/prometheus/prometheus.yml with its alert rules. Every query of
// README, the dashboard and the alert rules goes through the Prometheus
// HTTP API.

// liveRateInterval stands for the dashboard's $__rate_interval: Grafana's
// value for a 1 s scrape interval is about 15 s.
const liveRateInterval = "15s"

// liveDeadline bounds the wait for every panel query to return data.
const liveDeadline = 90 * time.Second

// liveQuery is one expression to evaluate, where it comes from, and whether
// it must return data (alert expressions are comparisons, empty while
// nothing fires).
type liveQuery struct {
	source, expr string
	wantData     bool
}

func TestPrometheusLive(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not in PATH: run `bash scripts/install-prometheus.sh` (make test does), which installs Debian's prometheus package")
	}
	demo := startDemo(t)
	demoAddr := demo.metricsAddr(t)
	prom := startPrometheus(t, promBin, demoAddr)

	var queries []liveQuery
	for _, e := range readmePromQL(t) {
		queries = append(queries, liveQuery{source: "README", expr: e, wantData: true})
	}
	for _, q := range dashboardQueries(t) {
		e := strings.ReplaceAll(q.expr, "$__rate_interval", liveRateInterval)
		queries = append(queries, liveQuery{source: fmt.Sprintf("dashboard panel %q %s", q.panel, q.refID), expr: e, wantData: true})
	}
	for name, e := range alerts(t) {
		queries = append(queries, liveQuery{source: "alert " + name, expr: e})
	}

	// Every query parses at once; the data comes as the scrapes do.
	pending := queries
	deadline := time.Now().Add(liveDeadline)
	for {
		var empty []liveQuery
		for _, q := range pending {
			n, err := prom.query(q.expr)
			if err != nil {
				t.Fatalf("%s: %v\n  %s", q.source, err, q.expr)
			}
			if q.wantData && n == 0 {
				empty = append(empty, q)
			}
		}
		pending = empty
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, q := range pending {
				t.Errorf("%s returned no data within %s:\n  %s", q.source, liveDeadline, q.expr)
			}
			t.Logf("the demo's /metrics:\n%s", demo.scrape(t))
			return
		}
		demo.alive(t)
		time.Sleep(time.Second)
	}
	t.Logf("%d queries evaluated (README, dashboard, alerts), each with data where a panel needs it", len(queries))

	prom.rulesHealthy(t, alerts(t))
	prom.exemplars(t, "cqrs_message_duration_seconds_bucket")
	demo.stop(t)
}

// demoProcess is the order-flow demo, running with -keep-running.
type demoProcess struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	done   chan error
}

// lockedBuffer is a bytes.Buffer safe for one writer and readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDemo builds examples/orderflow and runs it as one process (api and
// workers) on Redis, with the outbox on PostgreSQL, serving /metrics on a
// free loopback port and running on after its orders.
func startDemo(t *testing.T) *demoProcess {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orderflow")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/orderflow").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, prefix := testsvc.RedisPrefix(t)
	_, schema := testsvc.Postgres(t)
	cmd := exec.Command(bin, "-prefix", prefix, "-metrics-addr", "127.0.0.1:0", "-keep-running",
		"-orders", "20", "-payment-timeout", "1s", "-timeout", "40s")
	for _, kv := range os.Environ() {
		// The demo reads these; a developer's own must not change the test.
		if !strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "REDIS_ADDR=") && !strings.HasPrefix(kv, "POSTGRES_DSN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "REDIS_ADDR="+testsvc.RedisAddr(),
		"POSTGRES_DSN="+testsvc.DSNWithSearchPath(testsvc.PostgresDSN(), schema))
	d := &demoProcess{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.stdout, d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // a failed test still stops it
			_ = cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// metricsAddr waits for the demo's "serving metrics" log record and returns
// its address.
func (d *demoProcess) metricsAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(d.stdout.String(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving metrics" && rec.Addr != "" {
				return rec.Addr
			}
		}
		d.alive(t)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the demo logged no \"serving metrics\" record\nstderr:\n%s", d.stderr)
	return ""
}

// alive fails the test when the demo has exited.
func (d *demoProcess) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		t.Fatalf("the demo exited: %v\nstderr:\n%s\nstdout (end):\n%s", err, d.stderr, lastLines(d.stdout.String(), 30))
	default:
	}
}

// scrape returns the demo's /metrics, for a failure's log.
func (d *demoProcess) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + d.metricsAddr(t) + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// stop sends SIGTERM and wants a clean exit.
func (d *demoProcess) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("the demo did not exit cleanly on SIGTERM: %v\nstderr:\n%s", err, d.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the demo still runs 30s after SIGTERM")
	}
}

func lastLines(s string, n int) string {
	all := strings.Split(s, "\n")
	return strings.Join(all[max(0, len(all)-n):], "\n")
}

// promServer is a running Prometheus.
type promServer struct {
	base string
	out  *lockedBuffer
}

// startPrometheus runs Prometheus on a free loopback port with the
// stack's prometheus.yml and alerts.yml, changed only where the test must:
// a 1 s scrape and evaluation interval, the demo's and its own address as
// targets.
func startPrometheus(t *testing.T, bin, demoAddr string) *promServer {
	t.Helper()
	dir := t.TempDir()
	addr := freeLoopbackAddr(t)

	var cfg map[string]any
	readYAML(t, prometheusConfig, &cfg)
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		t.Fatalf("%s has no global section", prometheusConfig)
	}
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	jobs, _ := cfg["scrape_configs"].([]any)
	targets := map[string]string{"orderflow": demoAddr, "prometheus": addr}
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		name, _ := job["job_name"].(string)
		target, ok := targets[name]
		if !ok {
			t.Fatalf("%s scrapes job %q, which this test does not know", prometheusConfig, name)
		}
		delete(targets, name)
		static, _ := job["static_configs"].([]any)
		if len(static) != 1 {
			t.Fatalf("job %q: want one static_configs entry, have %d", name, len(static))
		}
		static[0].(map[string]any)["targets"] = []string{target}
	}
	if len(targets) > 0 {
		t.Fatalf("%s lacks the jobs %v", prometheusConfig, targets)
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	// rule_files are relative to the config file, as in compose.
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(alertRules)), rules, 0o644); err != nil {
		t.Fatal(err)
	}

	out := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--enable-feature=exemplar-storage",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	p := &promServer{base: "http://" + addr, out: out}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("prometheus exited: %v\n%s", err, out)
		default:
		}
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 30s:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// apiResponse is the envelope of the Prometheus HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// get calls the API and decodes its data into v; a parse or evaluation
// error of the expression is the returned error.
func (p *promServer) get(path string, params url.Values, v any) error {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: HTTP %d, undecodable body: %w", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// query evaluates expr now and returns how many series or samples it gave.
func (p *promServer) query(expr string) (int, error) {
	var data struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return 0, err
	}
	if data.ResultType != "vector" && data.ResultType != "matrix" {
		return 0, fmt.Errorf("result type %q, want a vector", data.ResultType)
	}
	return len(data.Result), nil
}

// rulesHealthy wants every alert of alerts.yml loaded and evaluated
// without error.
func (p *promServer) rulesHealthy(t *testing.T, want map[string]string) {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []struct {
				Name           string    `json:"name"`
				Type           string    `json:"type"`
				Health         string    `json:"health"`
				LastError      string    `json:"lastError"`
				LastEvaluation time.Time `json:"lastEvaluation"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", url.Values{"type": {"alert"}}, &data); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			seen[r.Name] = true
			if r.Health != "ok" || r.LastEvaluation.IsZero() {
				t.Errorf("alert %s: health %q, last evaluation %s, error %q", r.Name, r.Health, r.LastEvaluation, r.LastError)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("alert %s is not loaded by Prometheus", name)
		}
	}
}

// exemplars wants at least one exemplar with a trace_id on metric, as
// scraped in the OpenMetrics format.
func (p *promServer) exemplars(t *testing.T, metric string) {
	t.Helper()
	now := time.Now()
	var data []struct {
		Exemplars []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	params := url.Values{
		"query": {metric},
		"start": {fmt.Sprint(now.Add(-10 * time.Minute).Unix())},
		"end":   {fmt.Sprint(now.Unix())},
	}
	if err := p.get("/api/v1/query_exemplars", params, &data); err != nil {
		t.Fatal(err)
	}
	for _, s := range data {
		for _, e := range s.Exemplars {
			if len(e.Labels["trace_id"]) == 32 {
				return
			}
		}
	}
	t.Errorf("no exemplar with a trace_id on %s (series: %d)", metric, len(data))
}
