package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/getsentry/sentry-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/spanfile"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// roleKey is the resource attribute naming the role of a process.
const roleKey = attribute.Key("orderflow.role")

// telemetry is what one process sets up once in main, as README "Instrument
// a router" step 1 says: the tracer provider, the propagator, the JSON
// logger, the hook registry with the framework span hook, and the
// Prometheus registry.
type telemetry struct {
	// process names this process in the waterfall: role and the start of
	// its service.instance.id.
	process string
	tp      *sdktrace.TracerProvider
	prop    propagation.TextMapPropagator
	// recorder keeps the spans this process ended, for the waterfall; nil
	// in a worker, which runs until stopped.
	recorder *tracetest.SpanRecorder
	// otlp tells whether spans are exported with OTLP.
	otlp bool
	// sentry tells whether handler errors go to Sentry (SENTRY_DSN).
	sentry  bool
	logger  *slog.Logger
	wmlog   watermill.LoggerAdapter
	reg     *hooks.Registry
	prom    *prometheus.Registry
	metrics *promobs.Metrics
	opts    []watermillobs.Option
	server  *http.Server
}

// otlpConfigured tells whether the standard environment asks for OTLP
// export of traces.
func otlpConfigured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" ||
		os.Getenv("OTEL_TRACES_EXPORTER") == "otlp"
}

// newTelemetry configures the telemetry of a process of role. Spans go to
// OTLP when the environment asks for it (otlptracehttp reads the endpoint,
// headers and the rest from the environment itself), to a JSON-lines file
// in spansDir when set, and, in the api, to an in-process recorder for the
// waterfall. The sampler is the SDK's, which reads OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (parent-based always-on when unset). traceAll
// traces every hook operation and logs each one (see traceAllHooks).
func newTelemetry(ctx context.Context, role, spansDir, metricsAddr string, traceAll bool) (*telemetry, error) {
	instanceID := watermill.NewUUID()
	t := &telemetry{process: role + "-" + instanceID[:6]}

	// Resource: service.name "orderflow" unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES say otherwise (later options win).
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("orderflow"), semconv.ServiceInstanceID(instanceID)),
		resource.WithFromEnv(),
		resource.WithProcessPID(),
		resource.WithHost(),
		resource.WithAttributes(roleKey.String(role)),
	)
	if res == nil {
		return nil, fmt.Errorf("cannot build the resource: %w", err)
	}
	resErr := err // a partial resource (a detector failed) is still used
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if otlpConfigured() {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("cannot create the OTLP exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		t.otlp = true
	}
	if spansDir != "" {
		if err := os.MkdirAll(spansDir, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create the spans directory: %w", err)
		}
		exp, err := spanfile.NewExporter(filepath.Join(spansDir, t.process+".jsonl"), t.process)
		if err != nil {
			return nil, err
		}
		// A syncer: the api reads the file while this process runs.
		tpOpts = append(tpOpts, sdktrace.WithSyncer(exp))
	}
	if role != roleWorker {
		t.recorder = tracetest.NewSpanRecorder()
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(t.recorder))
	}
	t.tp = sdktrace.NewTracerProvider(tpOpts...)
	otel.SetTracerProvider(t.tp)

	// OTEL_PROPAGATORS (tracecontext,baggage when unset).
	t.prop = autoprop.NewTextMapPropagator()
	otel.SetTextMapPropagator(t.prop)

	// JSON logs on stdout; NewLogHandler adds trace and correlation fields
	// to every record logged with a context.
	t.logger = slog.New(watermillobs.NewLogHandler(slog.NewJSONHandler(os.Stdout, nil)))
	slog.SetDefault(t.logger)
	if resErr != nil {
		t.logger.Warn("some resource attributes are missing", "error", resErr)
	}
	// Watermill's own logs: warnings and errors only, the same JSON, with
	// logger=watermill so that they can be told from this module's.
	t.wmlog = watermill.NewSlogLogger(slog.New(watermillobs.NewLogHandler(
		slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))).With(slog.String("logger", "watermill")))

	// One hook registry: the span hook of the default profile (saga.run.*,
	// redis.lock.*, outbox.*, event.dispatch.*, ...), the saga and outbox
	// metrics hooks added by the parts that run.
	t.reg = hooks.NewRegistry()
	var ops []string // nil: the default profile
	if traceAll {
		ops = []string{"*"}
		if err := registerOperationLog(t.reg, t.logger); err != nil {
			return nil, err
		}
	}
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: t.reg, TracerProvider: t.tp, Logger: t.logger, Operations: ops}); err != nil {
		return nil, err
	}
	t.opts = []watermillobs.Option{
		watermillobs.WithTracerProvider(t.tp),
		watermillobs.WithPropagators(t.prop),
		watermillobs.WithLogger(t.logger),
		watermillobs.WithHookRegistry(t.reg),
	}

	// Sentry when SENTRY_DSN is set (README "Retries, poison queues and
	// Sentry"): handler errors and panics, through sentryobs.
	if dsn := os.Getenv("SENTRY_DSN"); dsn != "" {
		if err := sentry.Init(sentry.ClientOptions{Dsn: dsn, ServerName: t.process}); err != nil {
			return nil, fmt.Errorf("cannot configure Sentry (SENTRY_DSN): %w", err)
		}
		t.sentry = true
	}

	t.prom = prometheus.NewRegistry()
	t.prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if t.metrics, err = promobs.New(t.prom); err != nil {
		return nil, err
	}
	if metricsAddr != "" {
		if err := t.serveMetrics(metricsAddr); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// serveMetrics serves /metrics on addr, in the OpenMetrics format when the
// scraper asks for it (exemplars need it).
func (t *telemetry) serveMetrics(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot serve metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.prom, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := t.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.logger.Error("metrics server stopped", "error", err)
		}
	}()
	t.logger.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	return nil
}

// shutdown flushes the spans (OTLP, span file) and stops the metrics
// server.
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	if t.server != nil {
		errs = append(errs, t.server.Shutdown(ctx))
	}
	errs = append(errs, t.tp.Shutdown(ctx))
	if t.sentry && !sentry.Flush(2*time.Second) {
		t.logger.Warn("some Sentry events were not sent within 2s")
	}
	return errors.Join(errs...)
}
