package main

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// TestOrderSummary_read_cost_per_order: the status query reads one
// order's summary at a cost that does not grow with the orders in the
// read model. It used to read every order's milestones (one hash for all)
// on each query: in the soak run the workers' heap, RSS and CPU grew with
// every order placed.
func TestOrderSummary_read_cost_per_order(t *testing.T) {
	small, smallSummary := summaryReadCost(t, 20)
	large, largeSummary := summaryReadCost(t, 2000)
	t.Logf("bytes allocated by one summary read: %.0f with 20 orders, %.0f with 2000", small, large)
	if smallSummary != "shipped" || largeSummary != "shipped" {
		t.Errorf("summaries %q and %q, want shipped", smallSummary, largeSummary)
	}
	if large > 2*small+1024 {
		t.Errorf("one summary read allocates %.0f bytes with 2000 orders in the read model, %.0f with 20: it grows with the orders", large, small)
	}
}

// summaryReadCost projects orders orders (placed, stock reserved, paid,
// shipped) and returns the bytes one summary read allocates, and the
// summary of the first order.
func summaryReadCost(t *testing.T, orders int) (float64, string) {
	t.Helper()
	const stream = "events"
	log, store := projections.NewMemoryLog(), projections.NewMemoryStore()
	for i := range orders {
		id := fmt.Sprintf("order-%04d", i)
		for _, typ := range []string{"OrderPlaced", "StockReserved", "PaymentCharged", "OrderShipped"} {
			msg := message.NewMessage(fmt.Sprintf("%s-%s", id, typ), []byte(`{"OrderID":"`+id+`"}`))
			msg.Metadata.Set(contract.NameKey, typ)
			msg.Metadata.Set(contract.CorrelationIDKey, "corr-"+id)
			log.Append(stream, msg)
		}
	}
	w, err := projections.NewWorker(projections.Config{
		Projection: orderSummary(),
		Streams:    []string{stream},
		Partitions: 2,
		Key:        projections.MetadataKey(contract.CorrelationIDKey),
		Block:      10 * time.Millisecond,
		BatchSize:  500,
		Source:     log,
		Store:      store,
		Propagator: propagation.TraceContext{},
	})
	if err != nil {
		t.Fatal(err)
	}
	sp := &summaryProjection{worker: w}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	last := fmt.Sprintf("order-%04d", orders-1)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s, err := sp.summary(ctx, last)
		if err != nil {
			t.Fatal(err)
		}
		if s == "shipped" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projection did not reach %s within 30s (summary %q)", last, s)
		}
	}
	cancel()
	<-done

	// The worker stopped: only the reads allocate now.
	const reads = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var first string
	for range reads {
		if first, err = sp.summary(t.Context(), "order-0000"); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / reads, first
}
