package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What the soak run reads of a process: /proc and its /metrics.

// soakSample is one process at one moment.
type soakSample struct {
	at    time.Duration // since the first order (negative: before)
	phase string        // idle, load, settle
	proc  string        // "worker 1", "api 3", "redis-server", "postgres"
	pid   int
	rss   int64   // bytes, VmRSS
	cpu   float64 // seconds of CPU (user and system) so far
	heap  int64   // bytes, go_memstats_heap_alloc_bytes; -1 for a server
	// goroutines is go_goroutines; -1 for a server.
	goroutines int
	fds        int // open descriptors
	sockets    int // of which sockets
	// The sockets by peer: TCP connections to Redis and to PostgreSQL,
	// and the rest (listeners, the scrape, anything else).
	redisConns, pgConns, otherSockets int
	// serverClients is, for redis-server, its connected clients; for
	// postgres, the api's backends.
	serverClients int
}

// workerState is a sample of every worker at one moment.
type workerState struct {
	label string
	at    time.Duration
	procs map[string]soakSample
}

func (s workerState) String() string {
	var names []string
	for n := range s.procs {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		p := s.procs[n]
		parts = append(parts, fmt.Sprintf("%s: %d goroutines, %d fds, %d sockets (%d to Redis, %d others), rss %.1f MiB, heap %.1f MiB",
			n, p.goroutines, p.fds, p.sockets, p.redisConns, p.otherSockets, mb(p.rss), mb(p.heap)))
	}
	return s.label + ": " + strings.Join(parts, "; ")
}

// medianState is the median, per process and figure, of several states.
func medianState(states []workerState) workerState {
	out := workerState{label: states[0].label, at: states[len(states)/2].at, procs: map[string]soakSample{}}
	for name, first := range states[0].procs {
		var all []soakSample
		for _, s := range states {
			if p, ok := s.procs[name]; ok {
				all = append(all, p)
			}
		}
		m := first
		mi := func(f func(soakSample) int) int {
			return int(median(all, func(s soakSample) float64 { return float64(f(s)) }))
		}
		m.goroutines = mi(func(s soakSample) int { return s.goroutines })
		m.fds = mi(func(s soakSample) int { return s.fds })
		m.sockets = mi(func(s soakSample) int { return s.sockets })
		m.redisConns = mi(func(s soakSample) int { return s.redisConns })
		m.pgConns = mi(func(s soakSample) int { return s.pgConns })
		m.otherSockets = mi(func(s soakSample) int { return s.otherSockets })
		m.rss = int64(median(all, func(s soakSample) float64 { return float64(s.rss) }))
		m.heap = int64(median(all, func(s soakSample) float64 { return float64(s.heap) }))
		out.procs[name] = m
	}
	return out
}

// median of f over samples (the lower middle of an even number).
func median(samples []soakSample, f func(soakSample) float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = f(s)
	}
	slices.Sort(v)
	return v[(len(v)-1)/2]
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// readRSS reads VmRSS of pid.
func readRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// readCPU reads the user and system CPU time of pid.
func readCPU(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: the fields start
	// after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(raw, ')')
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return float64(u+s) / clockTicks, nil
}

// processSockets returns the socket inodes of pid and its number of
// open descriptors.
func processSockets(pid int) (inodes []string, fds int, err error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range entries {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		fds++
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes = append(inodes, strings.TrimSuffix(in, "]"))
		}
	}
	return inodes, fds, nil
}

type socketCounts struct{ redis, pg, other int }

// classifySockets sorts the sockets (inodes) by the peer of their TCP
// connection, as /proc/net/tcp and tcp6 show it: Redis at redisPort,
// PostgreSQL at pgPort, or other (a listener, the scrape, a Unix socket).
func classifySockets(inodes []string, redisPort, pgPort int) socketCounts {
	peer := map[string]int{} // inode -> remote port of an established connection
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "01" { // 01: ESTABLISHED
				continue
			}
			_, portHex, _ := strings.Cut(f[2], ":")
			port, err := strconv.ParseInt(portHex, 16, 32)
			if err != nil {
				continue
			}
			peer[f[9]] = int(port)
		}
	}
	var c socketCounts
	for _, in := range inodes {
		switch port, ok := peer[in]; {
		case ok && port == redisPort:
			c.redis++
		case ok && port == pgPort:
			c.pg++
		default:
			c.other++
		}
	}
	return c
}

// scrapeClient scrapes without keep-alive, so that a sample leaves no
// connection open behind it.
var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// scrapeMetrics reads the named gauges of the Prometheus text format at
// addr.
func scrapeMetrics(addr string, names ...string) (map[string]float64, error) {
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("no %s at %s", n, addr)
		}
	}
	return out, nil
}

// postgresPort is the port of a DSN, URL or keyword form (5432 unless it
// says otherwise).
func postgresPort(dsn string) int {
	port := "5432"
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if p := u.Port(); p != "" {
			port = p
		}
	} else {
		for kv := range strings.FieldsSeq(dsn) {
			if v, ok := strings.CutPrefix(kv, "port="); ok {
				port = v
			}
		}
	}
	n, _ := strconv.Atoi(port)
	return n
}
