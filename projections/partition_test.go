package projections_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// startChild starts the test binary as a worker process named member.
func startChild(t *testing.T, member, prefix, stream string, ttl time.Duration, partitions int, clusterAddrs []string) *exec.Cmd {
	t.Helper()
	spec := strings.Join(append([]string{member, prefix, stream, ttl.String(), itoa(partitions)}, clusterAddrs...), ",")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// owners returns the member holding the lease of each partition ("" for
// none).
func owners(t *testing.T, client redis.UniversalClient, store *projections.RedisStore, partitions int) []string {
	t.Helper()
	out := make([]string, partitions)
	for i := range out {
		v, err := client.Get(context.Background(), store.Key(projections.Partition{Projection: "partitioned", Index: i}, "lease")).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		out[i], _, _ = strings.Cut(v, "/")
	}
	return out
}

func countOwned(owners []string, member string) int {
	n := 0
	for _, o := range owners {
		if o == member {
			n++
		}
	}
	return n
}

func TestPartitions_two_processes_one_killed(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	runPartitionScenario(t, client, prefix, nil, false)
}

// TestPartitions_paused_owner_is_fenced stops a worker process (SIGSTOP)
// past its lease, lets the other take its partitions, and resumes it: its
// writes of the batches it was working on are refused (fencing), and the
// partitions are shared again.
func TestPartitions_paused_owner_is_fenced(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	runPartitionScenario(t, client, prefix, nil, true)
}

// runPartitionScenario has two worker processes consume events across 4
// partitions while they are being added, SIGKILLs one mid-run, and checks
// that the survivor takes its partitions within the lease timeout and
// that the read model equals the one computed from the events.
func runPartitionScenario(t *testing.T, client redis.UniversalClient, prefix string, clusterAddrs []string, pause bool) {
	const (
		partitions = 4
		accounts   = 101
		ttl        = 2 * time.Second
	)
	total := 10_000
	if testsvc.Full() && clusterAddrs == nil {
		total = 100_000
	}
	stream := prefix + "{partitioned}.events"
	store, err := projections.NewRedisStore(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	observer, err := projections.NewWorker(partitionedConfig("observer", stream, partitions, ttl, store, projections.NewRedisSource(client)))
	if err != nil {
		t.Fatal(err)
	}

	a := startChild(t, "A", prefix, stream, ttl, partitions, clusterAddrs)
	startChild(t, "B", prefix, stream, ttl, partitions, clusterAddrs)
	waitFor(t, 20*time.Second, "both processes to own two partitions", func() bool {
		o := owners(t, client, store, partitions)
		return countOwned(o, "A") == 2 && countOwned(o, "B") == 2
	})

	// Add the events in chunks while the workers run.
	var wg sync.WaitGroup
	added := make(chan int, total/500+1)
	wg.Go(func() {
		defer close(added)
		for from := 0; from < total; from += 500 {
			addEvents(t, client, stream, from, min(from+500, total), accounts)
			added <- min(from+500, total)
			time.Sleep(5 * time.Millisecond)
		}
	})
	// Kill A once a third of the events are in and some are applied.
	for n := range added {
		if n >= total/3 {
			break
		}
	}
	waitFor(t, 20*time.Second, "progress", func() bool {
		lags, err := observer.Lag(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lags {
			if l.Events < int64(total/3) {
				return true
			}
		}
		return false
	})
	sig := syscall.SIGKILL
	if pause {
		sig = syscall.SIGSTOP
	}
	if err := a.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, 3*ttl, "B to own every partition", func() bool {
		return countOwned(owners(t, client, store, partitions), "B") == partitions
	})
	if took := time.Since(killed); took > ttl+ttl/4+500*time.Millisecond {
		t.Fatalf("partitions moved %v after the kill, want within the lease timeout %v (+ a renewal tick)", took, ttl)
	}
	t.Logf("partitions moved to the survivor %v after the kill (lease TTL %v)", time.Since(killed), ttl)
	if pause {
		if err := a.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*ttl, "the partitions to be shared again", func() bool {
			o := owners(t, client, store, partitions)
			return countOwned(o, "A") == 2 && countOwned(o, "B") == 2
		})
	}
	for range added {
	}
	wg.Wait()
	waitCaughtUp(t, observer, 120*time.Second)
	compareModels(t, readModel(t, observer), expectedModel(0, total, accounts))
}

func itoa(n int) string { return strconv.Itoa(n) }
