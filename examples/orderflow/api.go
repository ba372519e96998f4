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
// span of its own with a new correlation ID (all at once, or
// -order-interval apart), waits until every saga ended (or -timeout), then
// asks each order's status through request/reply. A failure to reach the
// broker or the saga store (a restarting Redis) is retried within
// -timeout.
func (a *app) placeAndWait(ctx context.Context) (*runResult, error) {
	tracer := a.tel.tp.Tracer("orderflow")
	run := watermill.NewShortUUID()[:6]
	res := &runResult{}
	for i := range a.cfg.orders {
		if i > 0 && a.cfg.orderInterval > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(a.cfg.orderInterval):
			}
		}
		o := &placedOrder{id: fmt.Sprintf("order-%s-%03d", run, i), correlationID: hooks.NewCorrelationID()}
		if err := a.place(ctx, tracer, o, i); err != nil {
			return nil, err
		}
		res.orders = append(res.orders, o)
	}

	deadline := time.Now().Add(a.cfg.timeout)
	for {
		open := a.refresh(ctx, res.orders)
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
			switch {
			case err != nil && ctx.Err() != nil:
				return res, ctx.Err()
			case err != nil && time.Now().After(deadline):
				res.stalled = true
				return res, err
			case err != nil:
				a.tel.logger.WarnContext(ctx, "order status query failed; asking again", "order_id", o.id, "error", err)
			default:
				o.reply = r
				if !summaryFinal(r.Summary) && time.Now().After(deadline) {
					res.stalled = true
					return res, fmt.Errorf("order %s ended (%s) but the order summary shows %q after %s (-timeout)",
						o.id, o.outcome, r.Summary, a.cfg.timeout)
				}
			}
			if o.reply != nil && summaryFinal(o.reply.Summary) {
				break
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

// place sends PlaceOrder for o, the i-th order, in a root span of its own
// with o's correlation ID, and logs "order placed". A failed send is sent
// again within -timeout: PlaceOrder is idempotent (the outbox keeps one
// order row; the saga starts once per order ID).
func (a *app) place(ctx context.Context, tracer trace.Tracer, o *placedOrder, i int) error {
	octx := hooks.WithCorrelationID(ctx, o.correlationID)
	octx, span := tracer.Start(octx, "place order", trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("order.id", o.id), attribute.String("messaging.message.conversation_id", o.correlationID)))
	defer span.End()
	o.span = span.SpanContext()
	card := cardFor(i)
	deadline := time.Now().Add(a.cfg.timeout)
	for {
		err := a.commands.Send(octx, &PlaceOrder{OrderID: o.id, Amount: 100 + i, Card: card})
		if err == nil {
			a.tel.logger.InfoContext(octx, "order placed", "order_id", o.id, "card", card)
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			span.SetStatus(codes.Error, err.Error())
			return fmt.Errorf("cannot place order %s: %w", o.id, err)
		}
		a.tel.logger.WarnContext(octx, "cannot place the order; sending it again", "order_id", o.id, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
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
// still open: not ended, or ended with commands not yet published. An
// order the store cannot be read for stays open (and is logged).
func (a *app) refresh(ctx context.Context, orders []*placedOrder) []*placedOrder {
	var open []*placedOrder
	for _, o := range orders {
		if o.outcome != "" {
			continue
		}
		inst, found, err := a.br.store.Load(ctx, sagaType, o.id)
		if err != nil {
			if ctx.Err() == nil {
				a.tel.logger.WarnContext(ctx, "cannot read the order from the saga store", "order_id", o.id, "error", err)
			}
			open = append(open, o)
			continue
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
	return open
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
