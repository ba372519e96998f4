package contract_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
)

func TestWithLinks_keeps_the_valid_ones_up_to_128(t *testing.T) {
	ctx := context.Background()
	if got := contract.WithLinks(ctx, []trace.SpanContext{{}, {}}); got != ctx {
		t.Error("no valid span context: ctx should be returned unchanged")
	}
	scs := make([]trace.SpanContext, 0, 200)
	for i := range 200 {
		scs = append(scs, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, byte(i)}, SpanID: trace.SpanID{2, byte(i)},
		}))
		if i == 3 {
			scs = append(scs, trace.SpanContext{}) // invalid: skipped
		}
	}
	marked := contract.WithLinks(ctx, scs)
	links := contract.Links(marked)
	if len(links) != 128 || !links[0].Equal(scs[0]) || !links[4].Equal(scs[5]) {
		t.Errorf("got %d links starting %v, want the first 128 valid ones in order", len(links), links[:min(5, len(links))])
	}
	if first, ok := contract.Link(marked); !ok || !first.Equal(scs[0]) {
		t.Errorf("Link = %v, %v; want the first", first, ok)
	}
	if inner := contract.WithoutLink(marked); len(contract.Links(inner)) != 0 {
		t.Error("WithoutLink left links")
	}
}
