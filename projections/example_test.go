package projections_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/projections"
)

// A projection of order totals per customer over an in-memory log fed from
// a Watermill subscriber: the same worker runs over Redis Streams with
// NewRedisSource and NewRedisStore.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pubsub := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	log := projections.NewMemoryLog()
	go func() { _ = log.Feed(ctx, pubsub, "orders") }()
	for i, amount := range []int{30, 12, 8} {
		msg := message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(amount)))
		msg.Metadata.Set("name", "OrderPlaced")
		msg.Metadata.Set("customer", []string{"ada", "bob", "ada"}[i])
		_ = pubsub.Publish("orders", msg)
	}

	totals := projections.NewProjection("customer_totals", func(_ context.Context, ev projections.Event, b *projections.Batch) error {
		amount, err := strconv.ParseInt(string(ev.Payload), 10, 64)
		if err != nil {
			return err // retried, then the poison policy applies
		}
		b.Incr("totals", ev.Metadata.Get("customer"), amount)
		return nil
	})
	w, err := projections.NewWorker(projections.Config{
		Projection: totals,
		Streams:    []string{"orders"},
		Source:     log,
		Store:      projections.NewMemoryStore(),
		Block:      10 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for info, _ := log.Info(ctx, "orders"); info.Length < 3; info, _ = log.Info(ctx, "orders") {
		time.Sleep(time.Millisecond)
	}
	go func() { _ = w.Run(ctx) }()
	for lags, _ := w.Lag(ctx); lags[0].Events > 0; lags, _ = w.Lag(ctx) {
		time.Sleep(time.Millisecond)
	}

	model, _ := w.Hash(ctx, "totals")
	for _, c := range slices.Sorted(maps.Keys(model)) {
		fmt.Printf("%s: %s\n", c, model[c])
	}
	fmt.Println("ready:", w.Ready(ctx, time.Minute) == nil)
	// Output:
	// ada: 38
	// bob: 12
	// ready: true
}
