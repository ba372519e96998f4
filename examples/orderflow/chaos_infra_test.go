package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The infrastructure of the chaos run: its own Redis server, a TCP proxy
// in front of it, an OTLP receiver and a fake Sentry, each of which the
// driver breaks and repairs.

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// chaosRedis is a redis-server of the chaos run: append-only file with
// appendfsync always, so that every acknowledged write survives a SIGKILL.
type chaosRedis struct {
	t    *testing.T
	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

func startChaosRedis(t *testing.T) *chaosRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("the chaos run needs redis-server on PATH (Debian: apt-get install redis-server): %v", err)
	}
	r := &chaosRedis{t: t, port: freePort(t), dir: t.TempDir(), log: &syncBuffer{}}
	r.start()
	t.Cleanup(func() { r.kill() })
	return r
}

func (r *chaosRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// start starts the server and waits until it answers PING.
func (r *chaosRedis) start() {
	r.t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir, "--save", "",
		"--protected-mode", "no")
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("cannot start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	client := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer client.Close()
	for deadline := time.Now().Add(20 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s does not answer: %v\n%s", r.addr(), err, r.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL and waits for it.
func (r *chaosRedis) kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// proxy is a TCP proxy that can delay what it forwards and cut every
// connection: the network between the processes and Redis.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	delay  time.Duration
	conns  map[net.Conn]bool
	cuts   int // connections cut by the driver
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *proxy) serve(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	p.conns[client], p.conns[server] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client) })
	wg.Go(func() { p.pipe(client, server) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// pipe copies from src to dst, each chunk after the current delay; when
// either side ends, both are closed.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			d := p.delay
			p.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// cut closes every open connection; returns how many client connections
// it cut.
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	n := len(p.conns) / 2
	p.cuts += n
	return n
}

// open is the number of proxied connections.
func (p *proxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

// proxies are the proxies of a run: one in front of the Redis server, or
// one in front of each node of a cluster. Each method applies to all.
type proxies []*proxy

func (ps proxies) setDelay(d time.Duration) {
	for _, p := range ps {
		p.setDelay(d)
	}
}

func (ps proxies) cut() int {
	n := 0
	for _, p := range ps {
		n += p.cut()
	}
	return n
}

func (ps proxies) open() int {
	n := 0
	for _, p := range ps {
		n += p.open()
	}
	return n
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// otlpSpan is one span the receiver got.
type otlpSpan struct {
	traceID, spanID, name, service, instance string
}

// otlpReceiver accepts OTLP/HTTP protobuf exports on /v1/traces; the
// driver stops it (the port refuses connections) and starts it again on
// the same port.
type otlpReceiver struct {
	t    *testing.T
	port int
	mu   sync.Mutex
	srv  *http.Server
	// spans by span ID (hex).
	spans    map[string]otlpSpan
	requests int
	down     bool
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{t: t, port: freePort(t), spans: map[string]otlpSpan{}}
	if err := r.up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

func (r *otlpReceiver) endpoint() string {
	return "http://127.0.0.1:" + strconv.Itoa(r.port) + "/v1/traces"
}

// up listens again on the receiver's port.
func (r *otlpReceiver) up() error {
	var ln net.Listener
	var err error
	for range 50 { // the port of a closed listener is free at once; retry a moment anyway
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(r.port)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("OTLP receiver: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.export)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv, r.down = srv, false
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// stop closes the listener and every connection: the endpoint is
// unreachable.
func (r *otlpReceiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv, r.down = nil, true
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (r *otlpReceiver) export(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var exp collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &exp); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests++
	for _, rs := range exp.ResourceSpans {
		var service, instance string
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.Key {
			case "service.name":
				service = kv.GetValue().GetStringValue()
			case "service.instance.id":
				instance = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				id := fmt.Sprintf("%x", s.SpanId)
				r.spans[id] = otlpSpan{traceID: fmt.Sprintf("%x", s.TraceId), spanID: id, name: s.Name, service: service, instance: instance}
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *otlpReceiver) span(id string) (otlpSpan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.spans[id]
	return s, ok
}

func (r *otlpReceiver) counts() (requests, spans int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, len(r.spans)
}

// The modes of the fake Sentry.
const (
	sentryOK      = "ok"
	sentryFailing = "500"
	sentryTimeout = "timeout"
)

// fakeSentry is a Sentry DSN's server: it accepts envelopes, answers 500s
// or holds the request until the client gives up, as the driver says.
type fakeSentry struct {
	ln  net.Listener
	srv *http.Server
	mu  sync.Mutex
	// mode is one of sentryOK, sentryFailing, sentryTimeout.
	mode string
	// release is closed when the mode leaves sentryTimeout.
	release chan struct{}
	// requests by the mode they met.
	requests map[string]int
	// events is the number of envelopes accepted with an event in them.
	events int
}

func startFakeSentry(t *testing.T) *fakeSentry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSentry{ln: ln, mode: sentryOK, release: make(chan struct{}), requests: map[string]int{}}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() {
		f.setMode(sentryOK)
		_ = f.srv.Close()
	})
	return f
}

// dsn is the DSN of the fake: project 1, any public key.
func (f *fakeSentry) dsn() string { return "http://chaos@" + f.ln.Addr().String() + "/1" }

func (f *fakeSentry) setMode(mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mode == sentryTimeout && mode != sentryTimeout {
		close(f.release)
	}
	if mode == sentryTimeout && f.mode != sentryTimeout {
		f.release = make(chan struct{})
	}
	f.mode = mode
}

func (f *fakeSentry) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	f.mu.Lock()
	mode, release := f.mode, f.release
	f.requests[mode]++
	if mode == sentryOK && bytes.Contains(body, []byte(`"type":"event"`)) {
		f.events++
	}
	f.mu.Unlock()
	switch mode {
	case sentryFailing:
		http.Error(w, "chaos: failing", http.StatusInternalServerError)
	case sentryTimeout:
		select { // hold the request: the client times out, or the mode changes
		case <-release:
		case <-req.Context().Done():
			return
		}
		http.Error(w, "chaos: timed out", http.StatusGatewayTimeout)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"00000000000000000000000000000000"}`)
	}
}

func (f *fakeSentry) stats() (requests map[string]int, events int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.requests))
	for k, v := range f.requests {
		out[k] = v
	}
	return out, f.events
}
