package testsvc

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// CPUMeter measures the CPU time a benchmark takes in this process and in
// the Redis server at [RedisAddr]. On a machine whose cores the server
// shares with the benchmark, CPU time per message varies less than wall
// time per message, and it shows what the work costs apart from waiting.
type CPUMeter struct {
	b               *testing.B
	client          *redis.Client
	process, server time.Duration
}

// StartCPU starts measuring; call it right before the measured loop.
func StartCPU(b *testing.B) *CPUMeter {
	b.Helper()
	m := &CPUMeter{b: b, client: Redis(b)}
	m.server, m.process = redisServerCPU(b, m.client), processCPU(b)
	return m
}

// Report reports the CPU time since StartCPU per message, n messages:
// go-cpu-ns/msg for this process, redis-cpu-ns/msg for the server.
func (m *CPUMeter) Report(n int) {
	m.b.Helper()
	process, server := processCPU(m.b), redisServerCPU(m.b, m.client)
	m.b.ReportMetric(float64(process-m.process)/float64(n), "go-cpu-ns/msg")
	m.b.ReportMetric(float64(server-m.server)/float64(n), "redis-cpu-ns/msg")
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisServerCPU is the user and system CPU time of the Redis server so
// far, from INFO cpu.
func redisServerCPU(b *testing.B, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %q: %v", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
