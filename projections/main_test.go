package projections_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// childEnv, when set, makes the test binary a worker process of the
// partition tests instead of running tests. Its value is
// "member,prefix,stream,leaseTTL,partitions[,clusterAddr...]".
const childEnv = "WMOBS_PROJECTIONS_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Only the test path checks for leaked goroutines: a child exits
	// above, and a leaked goroutine is a leak a user's process would carry.
	goleak.VerifyTestMain(m)
}

// runChild runs a partitioned sum projection until SIGTERM.
func runChild(spec string) error {
	f := strings.Split(spec, ",")
	if len(f) < 5 {
		return fmt.Errorf("bad spec %q", spec)
	}
	ttl, err := time.ParseDuration(f[3])
	if err != nil {
		return err
	}
	partitions, err := strconv.Atoi(f[4])
	if err != nil {
		return err
	}
	var client redis.UniversalClient
	if len(f) > 5 {
		client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: f[5:]})
	} else {
		client = redis.NewClient(&redis.Options{Addr: testsvc.RedisAddr()})
	}
	defer client.Close()
	store, err := projections.NewRedisStore(client, f[1])
	if err != nil {
		return err
	}
	w, err := projections.NewWorker(partitionedConfig(f[0], f[2], partitions, ttl, store, projections.NewRedisSource(client)))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// partitionedConfig is the configuration the processes of the partition
// tests share.
func partitionedConfig(member, stream string, partitions int, ttl time.Duration, store *projections.RedisStore, src projections.Source) projections.Config {
	return projections.Config{
		Projection: sumProjection("partitioned"),
		Streams:    []string{stream},
		Source:     src,
		Store:      store,
		Partitions: partitions,
		Key:        projections.MetadataKey(accountKey),
		Leaser:     store,
		LeaseTTL:   ttl,
		Member:     member,
		BatchSize:  200,
		Block:      50 * time.Millisecond,
	}
}
