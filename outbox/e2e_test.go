package outbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/outbox"
)

var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// savedOrder is what the transaction that saved an event had in context.
type savedOrder struct {
	traceID, correlationID, orderID string
}

// orders runs n orders on workers goroutines, each an INSERT into a business
// table and an outbox event in one transaction, a random 30% rolled back.
// It returns the committed events by UUID and the rolled-back UUIDs.
func orders(t *testing.T, e *env, o *outbox.Outbox, topic string, n int, progress *atomic.Int64) (map[string]savedOrder, map[string]bool) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("rollback seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	rollback := make([]bool, n)
	for i := range rollback {
		rollback[i] = rng.IntN(100) < 30
	}
	tracer := sdktrace.NewTracerProvider().Tracer("orders-test")

	var (
		mu        sync.Mutex
		committed = make(map[string]savedOrder)
		rolled    = make(map[string]bool)
		wg        sync.WaitGroup
		jobs      = make(chan int)
	)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				id := fmt.Sprintf("order-%05d", i)
				corr := fmt.Sprintf("corr-%05d", i)
				ctx := hooks.WithCorrelationID(context.Background(), corr)
				member, _ := baggage.NewMember("order_id", id)
				bag, _ := baggage.New(member)
				ctx = baggage.ContextWithBaggage(ctx, bag)
				ctx, span := tracer.Start(ctx, "POST /orders")

				tx, err := e.db.BeginTx(ctx, nil)
				if err != nil {
					t.Errorf("begin: %v", err)
					span.End()
					continue
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, id); err != nil {
					t.Errorf("insert order: %v", err)
				}
				msg := message.NewMessage(fmt.Sprintf("evt-%05d-%s", i, strings.Repeat("0", 20)), []byte(`{"order":"`+id+`"}`))
				msg.SetContext(ctx)
				if err := o.TxPublisher(tx).Publish(topic, msg); err != nil {
					t.Errorf("publish: %v", err)
				}
				want := savedOrder{traceID: span.SpanContext().TraceID().String(), correlationID: corr, orderID: id}
				if rollback[i] {
					err = tx.Rollback()
				} else {
					err = tx.Commit()
				}
				if err != nil {
					t.Errorf("end transaction: %v", err)
				}
				span.End()
				mu.Lock()
				if rollback[i] {
					rolled[msg.UUID] = true
				} else {
					committed[msg.UUID] = want
				}
				mu.Unlock()
				if progress != nil {
					progress.Add(1)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return committed, rolled
}

// checkArrivals checks that exactly the committed events arrived, each at
// least once by UUID (more only as at-least-once redelivery of the same
// message), with the trace ID, baggage and correlation of their transaction.
func checkArrivals(t *testing.T, got []arrived, committed map[string]savedOrder, rolled map[string]bool) {
	t.Helper()
	counts := make(map[string]int)
	for _, a := range got {
		counts[a.uuid]++
		if counts[a.uuid] > 1 {
			continue
		}
		if rolled[a.uuid] {
			t.Errorf("event %s of a rolled-back transaction arrived", a.uuid)
			continue
		}
		want, ok := committed[a.uuid]
		if !ok {
			t.Errorf("unknown event %s arrived", a.uuid)
			continue
		}
		tp := a.metadata.Get(contract.TraceparentKey)
		if parts := strings.Split(tp, "-"); len(parts) != 4 || parts[1] != want.traceID {
			t.Errorf("event %s: traceparent %q, want trace ID %s", a.uuid, tp, want.traceID)
		}
		if b := a.metadata.Get(contract.BaggageKey); b != "order_id="+want.orderID {
			t.Errorf("event %s: baggage %q, want order_id=%s", a.uuid, b, want.orderID)
		}
		if c := a.metadata.Get(contract.CorrelationIDKey); c != want.correlationID {
			t.Errorf("event %s: correlation_id %q, want %s", a.uuid, c, want.correlationID)
		}
		if a.payload != `{"order":"`+want.orderID+`"}` {
			t.Errorf("event %s: payload %s", a.uuid, a.payload)
		}
	}
	dups := 0
	for id := range committed {
		if counts[id] == 0 {
			t.Errorf("committed event %s never arrived", id)
		}
		dups += max(counts[id]-1, 0)
	}
	t.Logf("%d committed, %d rolled back, %d stream entries, %d redelivered duplicates", len(committed), len(rolled), len(got), dups)
}

func orderCount() int {
	if testsvc.Full() {
		return 1000
	}
	return 200
}

func TestOutbox_orders_exactly_committed_arrive_across_forwarder_restart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	o := e.newOutbox(outbox.Config{Propagator: w3c, SubscribeBatchSize: 10})
	topic := e.prefix + "orders"
	n := orderCount()

	stop1 := e.runForwarder(o, outbox.ForwarderConfig{})
	var progress atomic.Int64
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		// Stop the first forwarder mid-run, while orders are still being
		// saved and forwarded, and start a new one.
		for progress.Load() < int64(n/3) {
			time.Sleep(5 * time.Millisecond)
		}
		stop1()
		e.runForwarder(o, outbox.ForwarderConfig{})
	}()
	committed, rolled := orders(t, e, o, topic, n, &progress)
	<-restarted

	want := make(map[string]bool, len(committed))
	for id := range committed {
		want[id] = true
	}
	e.waitStream(topic, want)
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })
	checkArrivals(t, e.readStream(topic), committed, rolled)
	var inTable int
	if err := e.db.QueryRow(`SELECT count(*) FROM orders`).Scan(&inTable); err != nil || inTable != len(committed) {
		t.Errorf("orders table holds %d rows (%v), want %d", inTable, err, len(committed))
	}
}

func TestForwarder_recovers_from_killed_backends(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	o := e.newOutbox(outbox.Config{Propagator: w3c, SubscribeBatchSize: 10})
	topic := e.prefix + "orders"
	n := orderCount()

	fdb, fapp := e.openDB("forwarder")
	e.runForwarder(o, outbox.ForwarderConfig{DB: wmsqlStd(fdb)})
	var progress atomic.Int64
	killed := make(chan int)
	go func() {
		total := 0
		defer func() { killed <- total }()
		// Kill the forwarder's backends (only those: by application_name)
		// a few times while orders are saved and forwarded.
		for k := 1; k <= 4; k++ {
			for progress.Load() < int64(k*n/5) {
				time.Sleep(2 * time.Millisecond)
			}
			total += e.kill(fapp)
		}
	}()
	committed, rolled := orders(t, e, o, topic, n, &progress)
	if k := <-killed; k == 0 {
		t.Fatalf("no forwarder backend was killed: the test proves nothing")
	} else {
		t.Logf("killed %d forwarder backends", k)
	}
	want := make(map[string]bool, len(committed))
	for id := range committed {
		want[id] = true
	}
	e.waitStream(topic, want)
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })
	checkArrivals(t, e.readStream(topic), committed, rolled)
}
