package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// placedOrder is one order the api placed.
type placedOrder struct {
	id            string
	correlationID string
	span          trace.SpanContext // of its "place order" root span
	outcome       string            // the saga's, once ended
	status        string
	reply         *OrderStatus // the answer to GetOrderStatus
}

// runResult is what the api saw.
type runResult struct {
	orders []*placedOrder
	// stalled is set when -timeout passed before every order ended.
	stalled bool
}

func (a *app) brokerName() string {
	if a.br.redis != nil {
		return "redis"
	}
	return "gochannel"
}

// forwardPublisher is the outbox forwarder's publisher: the broker's,
// decorated for send spans and the publish metrics.
func (a *app) forwardPublisher() *watermillobs.Publisher {
	return watermillobs.NewPublisher(a.tel.metrics.DecoratePublisher(a.br.publisher), a.tel.opts...)
}

// placeAndWait places the orders, each through the command bus in a root
// span of its own with a new correlation ID, waits until every saga ended
// (or -timeout), then asks each order's status through request/reply.
func (a *app) placeAndWait(ctx context.Context) (*runResult, error) {
	tracer := a.tel.tp.Tracer("orderflow")
	run := watermill.NewShortUUID()[:6]
	res := &runResult{}
	for i := range a.cfg.orders {
		o := &placedOrder{id: fmt.Sprintf("order-%s-%03d", run, i), correlationID: hooks.NewCorrelationID()}
		octx := hooks.WithCorrelationID(ctx, o.correlationID)
		octx, span := tracer.Start(octx, "place order", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("order.id", o.id), attribute.String("messaging.message.conversation_id", o.correlationID)))
		o.span = span.SpanContext()
		err := a.commands.Send(octx, &PlaceOrder{OrderID: o.id, Amount: 100 + i, Card: cardFor(i)})
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		if err != nil {
			return nil, fmt.Errorf("cannot place order %s: %w", o.id, err)
		}
		res.orders = append(res.orders, o)
	}

	deadline := time.Now().Add(a.cfg.timeout)
	for {
		open, err := a.refresh(ctx, res.orders)
		if err != nil {
			return nil, err
		}
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			res.stalled = true
			return res, fmt.Errorf("%d of %d orders not final after %s (-timeout): %s",
				len(open), len(res.orders), a.cfg.timeout, describeOpen(open))
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The query side: each order's status through request/reply. The
	// summary comes from the order-summary projection, which follows the
	// events a little behind the saga: ask again until it shows the end
	// too (read your writes), within -timeout.
	for _, o := range res.orders {
		for {
			r, err := a.queryStatus(ctx, tracer, o)
			if err != nil {
				return res, err
			}
			o.reply = r
			if summaryFinal(r.Summary) {
				break
			}
			if time.Now().After(deadline) {
				res.stalled = true
				return res, fmt.Errorf("order %s ended (%s) but the order summary shows %q after %s (-timeout)",
					o.id, o.outcome, r.Summary, a.cfg.timeout)
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return res, nil
}

// queryStatus asks for the status of o through request/reply, in the
// order's conversation, in a root span linked to the order's.
func (a *app) queryStatus(ctx context.Context, tracer trace.Tracer, o *placedOrder) (*OrderStatus, error) {
	qctx := hooks.WithCorrelationID(ctx, o.correlationID)
	qctx, span := tracer.Start(qctx, "get order status", trace.WithNewRoot(),
		trace.WithLinks(trace.Link{SpanContext: o.span}), trace.WithAttributes(attribute.String("order.id", o.id)))
	defer span.End()
	reply, err := requestreply.SendWithReply[OrderStatus](qctx, a.commands.Queries(), a.backend, &GetOrderStatus{OrderID: o.id})
	if err == nil {
		err = reply.Error
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, fmt.Errorf("cannot query order %s: %w", o.id, err)
	}
	return &reply.HandlerResult, nil
}

// refresh reads every open order from the saga store and returns those
// still open: not ended, or ended with commands not yet published.
func (a *app) refresh(ctx context.Context, orders []*placedOrder) ([]*placedOrder, error) {
	var open []*placedOrder
	for _, o := range orders {
		if o.outcome != "" {
			continue
		}
		inst, found, err := a.br.store.Load(ctx, sagaType, o.id)
		if err != nil {
			return nil, fmt.Errorf("cannot read order %s from the saga store: %w", o.id, err)
		}
		if found {
			o.status = inst.Status
		}
		if found && inst.Outcome != "" && len(inst.Pending) == 0 {
			o.outcome = inst.Outcome
			continue
		}
		open = append(open, o)
	}
	return open, nil
}

func describeOpen(open []*placedOrder) string {
	var parts []string
	for _, o := range open[:min(len(open), 5)] {
		status := o.status
		if status == "" {
			status = "not started"
		}
		parts = append(parts, o.id+" ("+status+")")
	}
	if len(open) > 5 {
		parts = append(parts, "...")
	}
	return strings.Join(parts, ", ")
}

// pick chooses the order to show: the first compensated or failed one,
// else the first.
func pick(orders []*placedOrder) *placedOrder {
	for _, want := range []string{sagas.OutcomeFailed, sagas.OutcomeCompensated} {
		if i := slices.IndexFunc(orders, func(o *placedOrder) bool { return o.outcome == want }); i >= 0 {
			return orders[i]
		}
	}
	if len(orders) == 0 {
		return nil
	}
	return orders[0]
}

var errNoSpans = errors.New("no spans recorded")
