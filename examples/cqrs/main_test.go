package main

import (
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// TestMain fails the tests if a goroutine outlives them; TestDemo runs the
// demo in this process, so that covers the demo's own goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestDemo runs make demo-cqrs's program and checks what it promises: the
// causation chain of one order, one trace through every hop, and the
// messages counted by kind.
func TestDemo(t *testing.T) {
	text := testsvc.Stdout(t, func() {
		if err := run(); err != nil {
			t.Fatal(err)
		}
	})

	if !regexp.MustCompile(`order status: placed, correlation ID: [0-9a-f-]{36}\n`).MatchString(text) {
		t.Errorf("no order status line with a correlation ID:\n%s", text)
	}

	// Each message's causation is the UUID of the one before it.
	chain := regexp.MustCompile(`(?m)^  (\w+)\s+(command|event|query)\s+uuid=(\w+) causation=(\S+)$`).FindAllStringSubmatch(text, -1)
	wantChain := []string{"place_order command", "reserve_on_order event", "reserve_stock command", "order_status query"}
	if len(chain) != len(wantChain) {
		t.Fatalf("causation chain: %d entries, want %d:\n%s", len(chain), len(wantChain), text)
	}
	for i, c := range chain {
		if got := c[1] + " " + c[2]; got != wantChain[i] {
			t.Errorf("chain[%d] = %q, want %q", i, got, wantChain[i])
		}
		want := "-"
		if i > 0 {
			want = chain[i-1][3]
		}
		if c[4] != want {
			t.Errorf("chain[%d] (%s): causation %s, want %s", i, c[1], c[4], want)
		}
	}

	// One trace: every hop nested under the one before it.
	var depth int
	for _, name := range []string{"POST /orders", "send shop.PlaceOrder", "process shop.PlaceOrder", "cqrs.PlaceOrder",
		"send shop.OrderPlaced", "process shop.OrderPlaced", "cqrs.OrderPlaced",
		"send shop.ReserveStock", "process shop.ReserveStock", "cqrs.ReserveStock",
		"send shop.GetOrderStatus", "process shop.GetOrderStatus", "cqrs.GetOrderStatus"} {
		line := "\n  " + strings.Repeat("  ", depth) + name + "\n"
		if !strings.Contains(text, line) {
			t.Errorf("span tree: no %q at depth %d:\n%s", name, depth, text)
		}
		depth++
	}

	for _, counter := range []string{
		"{kind=command,message_type=PlaceOrder,outcome=success} 1",
		"{kind=event,message_type=OrderPlaced,outcome=success} 1",
		"{kind=command,message_type=ReserveStock,outcome=success} 1",
		"{kind=query,message_type=GetOrderStatus,outcome=success} 1",
	} {
		if !strings.Contains(text, counter) {
			t.Errorf("cqrs_message_total: no %s:\n%s", counter, text)
		}
	}
}
