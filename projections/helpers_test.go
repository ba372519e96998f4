package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/projections"
)

// accountKey is the metadata key the test events carry their aggregate in.
const accountKey = "account"

// sumProjection adds each event's payload (an integer) to the account's
// total and counts the account's events.
func sumProjection(name string) projections.Projection {
	return projections.NewProjection(name, func(_ context.Context, ev projections.Event, b *projections.Batch) error {
		n, err := strconv.ParseInt(string(ev.Payload), 10, 64)
		if err != nil {
			return fmt.Errorf("bad amount: %w", err)
		}
		acct := ev.Metadata.Get(accountKey)
		b.Incr("totals", acct, n)
		b.Incr("counts", acct, 1)
		return nil
	})
}

// model is the read model sumProjection builds.
type model struct{ totals, counts map[string]string }

// eventMessage is the i-th test event: account i%accounts, amount i%97+1.
func eventMessage(i, accounts int) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i%97+1)))
	msg.Metadata.Set(accountKey, "acct-"+strconv.Itoa(i%accounts))
	msg.Metadata.Set("name", "AmountAdded")
	return msg
}

// expectedModel computes the model directly from events from..to-1.
func expectedModel(from, to, accounts int) model {
	totals, counts := map[int64]int64{}, map[int64]int64{}
	for i := from; i < to; i++ {
		a := int64(i % accounts)
		totals[a] += int64(i%97 + 1)
		counts[a]++
	}
	m := model{totals: map[string]string{}, counts: map[string]string{}}
	for a, v := range totals {
		k := "acct-" + strconv.FormatInt(a, 10)
		m.totals[k] = strconv.FormatInt(v, 10)
		m.counts[k] = strconv.FormatInt(counts[a], 10)
	}
	return m
}

// addEvents writes events from..to-1 to stream exactly as
// watermill-redisstream's publisher does (its marshaler, XADD), pipelined
// so that large scenarios are quick, and returns the entry IDs.
func addEvents(t testing.TB, client redis.Cmdable, stream string, from, to, accounts int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for start := from; start < to; start += 1000 {
		pipe := client.Pipeline()
		var cmds []*redis.StringCmd
		for i := start; i < min(start+1000, to); i++ {
			values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(stream, eventMessage(i, accounts))
			if err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("XADD: %v", err)
		}
		for _, c := range cmds {
			ids = append(ids, c.Val())
		}
	}
	return ids
}

// readModel reads the model of w.
func readModel(t testing.TB, w *projections.Worker) model {
	t.Helper()
	ctx := context.Background()
	totals, err := w.Hash(ctx, "totals")
	if err != nil {
		t.Fatal(err)
	}
	counts, err := w.Hash(ctx, "counts")
	if err != nil {
		t.Fatal(err)
	}
	return model{totals: totals, counts: counts}
}

func compareModels(t testing.TB, got, want model) {
	t.Helper()
	if len(got.totals) != len(want.totals) || len(got.counts) != len(want.counts) {
		t.Fatalf("model has %d totals and %d counts, want %d and %d", len(got.totals), len(got.counts), len(want.totals), len(want.counts))
	}
	for k, v := range want.totals {
		if got.totals[k] != v || got.counts[k] != want.counts[k] {
			t.Fatalf("account %s: total %s count %s, want %s and %s", k, got.totals[k], got.counts[k], v, want.counts[k])
		}
	}
}

// start runs w until the test ends and returns a function that stops it
// and returns Run's error.
func start(t testing.TB, w *projections.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("worker did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitCaughtUp waits until every partition of w has lag 0.
func waitCaughtUp(t testing.TB, w *projections.Worker, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lags, err := w.Lag(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		behind := int64(0)
		for _, l := range lags {
			behind += l.Events
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d events behind after %v (worker error: %v)", behind, timeout, w.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sumModels adds models of disjoint event ranges.
func sumModels(ms ...model) model {
	out := model{totals: map[string]string{}, counts: map[string]string{}}
	for _, m := range ms {
		for k, v := range m.totals {
			a, _ := strconv.ParseInt(out.totals[k], 10, 64)
			b, _ := strconv.ParseInt(v, 10, 64)
			out.totals[k] = strconv.FormatInt(a+b, 10)
			c, _ := strconv.ParseInt(out.counts[k], 10, 64)
			d, _ := strconv.ParseInt(m.counts[k], 10, 64)
			out.counts[k] = strconv.FormatInt(c+d, 10)
		}
	}
	return out
}

// addPoison adds an event (amount 1, account acct-0) marked poison=yes and
// returns its entry ID and UUID.
func addPoison(t testing.TB, client redis.Cmdable, stream string) (string, string) {
	t.Helper()
	msg := message.NewMessage(watermill.NewUUID(), []byte("1"))
	msg.Metadata.Set(accountKey, "acct-0")
	msg.Metadata.Set("poison", "yes")
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(stream, msg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := client.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id, msg.UUID
}

type redisXAdd struct {
	stream string
	values map[string]any
}

func (x redisXAdd) args() *redis.XAddArgs { return &redis.XAddArgs{Stream: x.stream, Values: x.values} }
