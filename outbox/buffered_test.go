package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/outbox"
)

func TestBufferedPublisher_groups_concurrent_publishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := &recorder{}
	reg := hooks.NewRegistry()
	reg.MustRegister(rec)
	o := e.newOutbox(outbox.Config{Topic: "buf", Registry: reg})
	bp, err := o.NewBufferedPublisher(outbox.BufferedConfig{DB: wmsql.BeginnerFromStdSQL(e.db)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bp.Close() }()
	topic := e.prefix + "orders"

	const n = 100
	want := make(map[string]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		m := message.NewMessage(fmt.Sprintf("buf-%03d-00000000000000000000000", i), []byte(`{}`))
		want[m.UUID] = true
		wg.Go(func() {
			if err := bp.Publish(topic, m); err != nil {
				t.Errorf("Publish: %v", err)
			}
		})
	}
	wg.Wait()
	// Every Publish returned after its commit: all rows are there.
	var rows, txs int
	if err := e.db.QueryRow(`SELECT count(*), count(DISTINCT transaction_id) FROM "watermill_buf"`).Scan(&rows, &txs); err != nil {
		t.Fatal(err)
	}
	if rows != n || txs >= n {
		t.Errorf("%d rows in %d transactions, want %d rows in fewer transactions (group commit)", rows, txs, n)
	}
	t.Logf("%d publishes in %d transactions", n, txs)
	if got := len(rec.named(outbox.OpBufferedPublish)); got != n {
		t.Errorf("%d %s operations, want %d", got, outbox.OpBufferedPublish, n)
	}
	e.runForwarder(o, outbox.ForwarderConfig{})
	e.waitStream(topic, want)
}

// lockTable blocks every INSERT into table until the returned func is
// called, and waits until the publisher's INSERT waits for it.
func lockTable(t *testing.T, e *env, table string) (release func(), waitBlocked func()) {
	t.Helper()
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`LOCK TABLE "` + table + `" IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	release = func() { _ = tx.Rollback() }
	t.Cleanup(release)
	waitBlocked = func() {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for {
			var n int
			if err := e.db.QueryRow(`SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass`, `"`+table+`"`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the publisher's INSERT never waited for the lock")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return release, waitBlocked
}

func TestBufferedPublisher_queue_full_is_a_clear_error(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{Topic: "full"})
	bp, err := o.NewBufferedPublisher(outbox.BufferedConfig{DB: wmsql.BeginnerFromStdSQL(e.db), QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bp.Close() }()
	release, waitBlocked := lockTable(t, e, "watermill_full")

	results := make(chan error, 3)
	publish := func(i int) {
		results <- bp.Publish("orders", message.NewMessage(fmt.Sprintf("full-%d-0000000000000000000000000", i), []byte(`{}`)))
	}
	go publish(0)
	waitBlocked() // the first call is in its transaction, waiting
	go publish(1)
	go publish(2)
	// One of the two later calls fills the queue of one; the other fails
	// at once.
	select {
	case err := <-results:
		if !errors.Is(err, outbox.ErrQueueFull) {
			t.Fatalf("first result = %v, want ErrQueueFull", err)
		}
	case <-time.After(waitFor):
		t.Fatal("no call failed with a full queue")
	}
	release()
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("queued call: %v", err)
		}
	}
}

func TestBufferedPublisher_close_drains_the_queue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{Topic: "drain"})
	bp, err := o.NewBufferedPublisher(outbox.BufferedConfig{DB: wmsql.BeginnerFromStdSQL(e.db)})
	if err != nil {
		t.Fatal(err)
	}
	release, waitBlocked := lockTable(t, e, "watermill_drain")
	results := make(chan error, 5)
	for i := range 5 {
		go func() {
			results <- bp.Publish("orders", message.NewMessage(fmt.Sprintf("drain-%d-000000000000000000000000", i), []byte(`{}`)))
		}()
		if i == 0 {
			waitBlocked()
		}
	}
	time.Sleep(20 * time.Millisecond) // let the other four queue up
	closed := make(chan struct{})
	go func() { _ = bp.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while calls were still queued")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	<-closed
	for range 5 {
		if err := <-results; err != nil {
			t.Errorf("call queued before Close: %v", err)
		}
	}
	var n int
	if err := e.db.QueryRow(`SELECT count(*) FROM "watermill_drain"`).Scan(&n); err != nil || n != 5 {
		t.Errorf("%d rows after Close (%v), want 5", n, err)
	}
	if err := bp.Publish("orders", message.NewMessage("late-000000000000000000000000000", nil)); !errors.Is(err, outbox.ErrPublisherClosed) {
		t.Errorf("Publish after Close = %v, want ErrPublisherClosed", err)
	}
}

func TestBufferedPublisher_refused_call_fails_alone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := hooks.NewRegistry()
	refuse := errors.New("rate limited")
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		if v, ok := op.Attr("message.id"); ok && v.String() == "refused-0000000000000000000000000" {
			return refuse
		}
		return next(ctx)
	}), hooks.WithOperations(outbox.OpSaveEvents))
	o := e.newOutbox(outbox.Config{Topic: "alone", Registry: reg})
	bp, err := o.NewBufferedPublisher(outbox.BufferedConfig{DB: wmsql.BeginnerFromStdSQL(e.db)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bp.Close() }()
	release, waitBlocked := lockTable(t, e, "watermill_alone")
	results := make(map[string]chan error)
	ids := []string{"first-000000000000000000000000000", "refused-0000000000000000000000000", "kept-00000000000000000000000000000"}
	for i, id := range ids {
		ch := make(chan error, 1)
		results[id] = ch
		go func() { ch <- bp.Publish("orders", message.NewMessage(id, []byte(`{}`))) }()
		if i == 0 {
			waitBlocked()
		}
	}
	time.Sleep(20 * time.Millisecond) // the other two queue up into one group
	release()
	if err := <-results[ids[1]]; !errors.Is(err, refuse) {
		t.Errorf("refused call: %v", err)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if err := <-results[id]; err != nil {
			t.Errorf("call %s: %v", id, err)
		}
	}
	var n int
	if err := e.db.QueryRow(`SELECT count(*) FROM "watermill_alone"`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d rows (%v), want 2", n, err)
	}
}
