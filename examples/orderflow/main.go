// Command orderflow is an order system on this module's packages,
// instrumented exactly as the README tells users: CQRS commands, events and
// a request/reply query (cqrsbus), the order saga (sagas), a transactional
// outbox (outbox), on Watermill's GoChannel or on Redis Streams.
//
// The api places orders and waits until every saga ended; workers run the
// stock, payment and shipping services and the saga. Every fifth order fails
// its payment (declined after a gateway error, or never answered so that the
// payment timeout compensates). At the end the api prints the trace of one
// order as a waterfall and a summary.
//
//	go run ./examples/orderflow                        # everything in one process, no server
//	REDIS_ADDR=127.0.0.1:6379 go run ./examples/orderflow -role worker -spans-dir spans &
//	REDIS_ADDR=127.0.0.1:6379 go run ./examples/orderflow -role api -spans-dir spans
//
// The environment: REDIS_ADDR (Redis Streams and the saga store in Redis;
// several addresses separated by commas: the seeds of a Redis Cluster),
// POSTGRES_DSN (the outbox), SENTRY_DSN (handler errors to Sentry), and OpenTelemetry's OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_TRACES_EXPORTER=otlp,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_PROPAGATORS,
// OTEL_TRACES_SAMPLER.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	orders         int
	role           string
	timeout        time.Duration
	metricsAddr    string
	spansDir       string
	prefix         string
	paymentTimeout time.Duration
	orderInterval  time.Duration
	keepRunning    bool
	traceAll       bool
	redisAddr      string
	postgresDSN    string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "orderflow:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("orderflow", flag.ContinueOnError)
	fs.IntVar(&cfg.orders, "orders", 20, "how many orders the api places")
	fs.StringVar(&cfg.role, "role", roleAll, "all (api and worker in one process), api or worker")
	fs.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "how long the api waits for every order to end")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (empty: off)")
	fs.StringVar(&cfg.spansDir, "spans-dir", "", "write this process's spans as JSON lines into this directory; the api reads them all for the waterfall (empty: off)")
	fs.StringVar(&cfg.prefix, "prefix", "orderflow:", "prefix of every Redis stream and key")
	fs.DurationVar(&cfg.paymentTimeout, "payment-timeout", 3*time.Second, "how long the saga waits for the payment before it compensates")
	fs.DurationVar(&cfg.orderInterval, "order-interval", 0, "place the orders this far apart instead of all at once (a steady flow, for the chaos test)")
	fs.BoolVar(&cfg.keepRunning, "keep-running", false, "after the report, keep running (handlers, /metrics) until SIGINT or SIGTERM, for a Prometheus scraping the process")
	fs.BoolVar(&cfg.traceAll, "trace-all", false, "trace every hook operation (\"*\") instead of the default profile, and log each operation with its attribute keys (diagnostics; docs/reference.md is checked with it)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	switch cfg.role {
	case roleAll, roleAPI, roleWorker:
	default:
		return cfg, fmt.Errorf("-role %q: want all, api or worker", cfg.role)
	}
	if cfg.orders < 1 {
		return cfg, fmt.Errorf("-orders %d: want at least 1", cfg.orders)
	}
	cfg.redisAddr = os.Getenv("REDIS_ADDR")
	cfg.postgresDSN = os.Getenv("POSTGRES_DSN")
	if cfg.role != roleAll && cfg.redisAddr == "" {
		return cfg, fmt.Errorf("-role %s needs REDIS_ADDR: the embedded GoChannel does not leave its process", cfg.role)
	}
	return cfg, nil
}

// run is the program: out receives the waterfall and the summary (the logs
// go to stdout through slog).
func run(args []string, out io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tel, err := newTelemetry(ctx, cfg.role, cfg.spansDir, cfg.metricsAddr, cfg.traceAll)
	if err != nil {
		return err
	}
	defer func() {
		// Flush the spans even when ctx is cancelled by a signal.
		flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.shutdown(flushCtx); err != nil {
			fmt.Fprintln(os.Stderr, "orderflow: flushing telemetry:", err)
		}
	}()

	var br *broker
	if cfg.redisAddr != "" {
		br, err = newRedisBroker(ctx, cfg.redisAddr, topics{cfg.prefix}, tel.process, tel.wmlog)
		if err != nil {
			return err
		}
	} else {
		br = newGoChannelBroker(tel.wmlog)
	}
	defer func() { _ = br.close() }()

	var ob *orderOutbox
	if cfg.postgresDSN != "" && cfg.role != roleWorker {
		if ob, err = openOutbox(ctx, cfg.postgresDSN, tel); err != nil {
			return err
		}
		defer func() { _ = ob.close() }()
	}

	a, err := newApp(ctx, cfg, tel, br, ob)
	if err != nil {
		return err
	}
	runCtx, stopRouter := context.WithCancel(ctx)
	defer stopRouter()
	wait, err := a.run(runCtx)
	if err != nil {
		return err
	}
	if ob != nil {
		fwd, err := ob.forward(runCtx, tel, a.forwardPublisher())
		if err != nil {
			return err
		}
		defer func() { _ = fwd.Close() }()
	}
	tel.logger.Info("orderflow running", "role", cfg.role, "process", tel.process,
		"broker", a.brokerName(), "outbox", ob != nil, "otlp", tel.otlp)

	if !a.hasAPI() {
		<-ctx.Done() // a worker runs until SIGINT or SIGTERM
		stopRouter()
		return wait()
	}
	result, placeErr := a.placeAndWait(ctx)
	if result != nil {
		a.report(ctx, out, result)
	}
	if cfg.keepRunning && placeErr == nil {
		tel.logger.Info("orders done; running until SIGINT or SIGTERM (-keep-running)")
		<-ctx.Done()
	}
	stopRouter()
	if err := wait(); err != nil && placeErr == nil {
		placeErr = err
	}
	if placeErr != nil && errors.Is(placeErr, context.Canceled) {
		return errors.New("interrupted")
	}
	return placeErr
}
