package readme

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs"
)

// hooksQuickStart is README "Hooks quick start".
func hooksQuickStart(ctx context.Context, auditHook hooks.Hook, tx *sql.Tx) error {
	// readme:begin hooks-quick-start
	reg := hooks.NewRegistry()

	// Log every operation slower than 200ms.
	slow := hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		start := time.Now()
		err := next(ctx)
		if d := time.Since(start); d > 200*time.Millisecond {
			slog.WarnContext(ctx, "slow operation", "operation", op.Name,
				"duration_ms", d.Milliseconds(), "correlation_id", hooks.CorrelationID(ctx))
		}
		return err
	})
	reg.MustRegister(slow) // no patterns: every operation

	// Audit commits and rollbacks, inside every other hook.
	audit, err := reg.Register(auditHook,
		hooks.WithOperations("*.commit", "*.rollback"),
		hooks.WithPriority(100))
	if err != nil {
		return err
	}
	audit.SetEnabled(false) // at run time, safe under concurrency
	defer audit.Unregister()

	ctx = hooks.WithCorrelationID(ctx, hooks.NewCorrelationID())
	return reg.Run(ctx, "uow.commit", []slog.Attr{slog.String("outcome", "success")},
		func(ctx context.Context) error { return tx.Commit() })
	// readme:end
}

// hotPath is README "On the hot path".
func hotPath(ctx context.Context, reg *hooks.Registry, topic string, publish func(context.Context) error) error {
	// readme:begin hot-path
	if !reg.EnabledPrefix("publisher.publish.") {
		return publish(ctx) // nothing observes this family: no name, no attrs built
	}
	return reg.Run(ctx, "publisher.publish."+topic,
		[]slog.Attr{slog.String("topic", topic)}, publish)
	// readme:end
}

// configureOTel is README "Instrument a router", step 1.
func configureOTel(otlpExporter sdktrace.SpanExporter) {
	// readme:begin router-otel
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(otlpExporter))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	slog.SetDefault(slog.New(watermillobs.NewLogHandler(slog.NewJSONHandler(os.Stdout, nil))))
	// readme:end
}

// instrumentRouter is README "Instrument a router", step 2.
func instrumentRouter(logger watermill.LoggerAdapter) error {
	// readme:begin router-instrument
	router, _ := message.NewRouter(message.RouterConfig{}, logger)

	metrics, err := promobs.New(prometheus.DefaultRegisterer) // or your own registry
	if err != nil {
		return err
	}
	err = watermillobs.Instrument(router, watermillobs.InstrumentConfig{
		Backends: []watermillobs.Backend{metrics, sentryobs.New()},
		// optional: sanitized payloads as span events
		PayloadTracing: &payloadtrace.Tracing{
			IncludeFields: []string{"order_id", "tenant_id"},
		},
	})
	// readme:end
	return err
}

// wrapPublisher is README "Instrument a router", step 3.
func wrapPublisher(mux *http.ServeMux, metrics *promobs.Metrics, redisPublisher message.Publisher, payload message.Payload) {
	// readme:begin router-publisher
	// metrics: the *promobs.Metrics of step 2 (watermill_messages_published_total).
	pub := watermillobs.NewPublisher(metrics.DecoratePublisher(redisPublisher))

	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		ctx := hooks.WithCorrelationID(r.Context(), hooks.NewCorrelationID())
		msg := message.NewMessage(watermill.NewUUID(), payload)
		msg.SetContext(ctx) // inside a handler: msg.SetContext(consumed.Context())
		if err := pub.Publish("orders", msg); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	// readme:end
}

// middlewaresAlone is README "Instrument a router": every piece alone.
func middlewaresAlone(router *message.Router, metrics *promobs.Metrics) {
	// readme:begin router-pieces
	router.AddMiddleware( // any of these, in this order
		watermillobs.Correlation(),
		watermillobs.Tracing(watermillobs.TracingConfig{}),
		payloadtrace.Tracing{IncludeFields: []string{"order_id"}}.Middleware,
		watermillobs.Logging(),
		metrics.HandlerMiddleware(), // metrics from promobs.New
		sentryobs.Middleware(),
	)
	// readme:end
}

// frameworkHooks is README "Framework hooks as spans".
func frameworkHooks() error {
	// readme:begin framework-hooks
	spans, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{}) // default production profile
	if err != nil {
		return err
	}
	spans.SetEnabled(false) // switch off at run time

	// Diagnostics only: every operation as a span.
	_, err = watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Operations: []string{"*"}})
	// readme:end
	return err
}

// PlaceOrder, GetOrderStatus and OrderStatus stand for a service's messages.
type (
	PlaceOrder     struct{ ID string }
	GetOrderStatus struct{ ID string }
	OrderStatus    struct{ State string }
)

// instrumentCQRS is README "Instrument CQRS".
func instrumentCQRS(
	r *http.Request, requestID, id string,
	logger watermill.LoggerAdapter,
	redisPublisher message.Publisher,
	commandBusConfig cqrs.CommandBusConfig,
	eventBusConfig cqrs.EventBusConfig,
	commandProcessorConfig cqrs.CommandProcessorConfig,
	eventProcessorConfig cqrs.EventProcessorConfig,
	eventGroupProcessorConfig cqrs.EventGroupProcessorConfig,
	requestReplyConfig requestreply.PubSubBackendConfig,
	backend requestreply.Backend[OrderStatus],
) error {
	// readme:begin cqrs
	router, _ := message.NewRouter(message.RouterConfig{}, logger)
	metrics, _ := promobs.New(prometheus.DefaultRegisterer)

	// Four lines wire the CQRS layer, on top of Watermill's own configurations.
	_ = watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{metrics, sentryobs.New()}})
	pub := watermillobs.NewPublisher(metrics.DecoratePublisher(redisPublisher))
	cqrsLayer, err := cqrsbus.Wire(cqrsbus.WireConfig{
		Publisher:           pub,
		CommandBus:          &commandBusConfig,
		EventBus:            &eventBusConfig,
		CommandProcessor:    &commandProcessorConfig,
		EventProcessor:      &eventProcessorConfig,
		EventGroupProcessor: &eventGroupProcessorConfig,
		RequestReply:        &requestReplyConfig,
	})
	if err != nil {
		return err
	}
	commands, events := cqrsLayer.CommandBus(), cqrsLayer.EventBus()
	// Then build the processors and the request/reply backend from the
	// same configurations with Watermill's constructors.

	// An entry point starts the conversation; handlers pass their ctx on.
	ctx := hooks.WithCorrelationID(r.Context(), requestID)
	if err := commands.Send(ctx, &PlaceOrder{ID: id}); err != nil {
		return err
	}

	// Queries go through requestreply with the Queries view of the bus.
	reply, err := requestreply.SendWithReply[OrderStatus](ctx, commands.Queries(), backend, &GetOrderStatus{ID: id})
	// readme:end
	_, _ = events, reply
	return err
}

// retriesAndPoison is README "Retries, poison queues and Sentry".
func retriesAndPoison(router *message.Router, pub message.Publisher) error {
	// readme:begin retries
	poison, err := middleware.PoisonQueue(pub, "orders.poison")
	if err != nil {
		return err
	}
	router.AddMiddleware(poison)
	err = watermillobs.Instrument(router, watermillobs.InstrumentConfig{
		Backends: []watermillobs.Backend{sentryobs.New()},
		Retry:    middleware.Retry{MaxRetries: 3}.Middleware,
	})
	// readme:end
	return err
}

// The snippets are compiled, never run: this keeps them referenced.
var _ = []any{
	hooksQuickStart, hotPath, configureOTel, instrumentRouter, wrapPublisher,
	middlewaresAlone, frameworkHooks, instrumentCQRS, retriesAndPoison,
}
