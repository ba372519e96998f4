package readme

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/projections"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// projectionWorker is README "Projections on Redis Streams", the worker.
func projectionWorker(ctx context.Context, redisClient redis.UniversalClient, reg *hooks.Registry) error {
	// readme:begin projection-worker
	totals := projections.NewProjection("customer_totals", func(ctx context.Context, ev projections.Event, b *projections.Batch) error {
		amount, err := strconv.ParseInt(string(ev.Payload), 10, 64)
		if err != nil {
			return err // retried with backoff, then the poison policy applies
		}
		b.Incr("totals", ev.Metadata.Get("customer"), amount) // committed with the checkpoint
		return nil
	})
	store, err := projections.NewRedisStore(redisClient, "shop:") // redis.UniversalClient: standalone or Cluster
	if err != nil {
		return err
	}
	w, err := projections.NewWorker(projections.Config{
		Projection: totals,
		Streams:    []string{"orders.placed"},
		Source:     projections.NewRedisSource(redisClient),
		Store:      store,
		Partitions: 4,
		Key:        projections.MetadataKey("customer"), // events of one customer stay in order
		Leaser:     store,                               // spread the partitions over the processes
		Poison:     projections.PoisonDeadLetter,        // default PoisonStop
		Gaps:       projections.GapContinue,             // default GapStop
		Hooks:      reg,
	})
	if err != nil {
		return err
	}
	go func() { _ = w.Run(ctx) }()
	model, err := w.Hash(ctx, "totals") // the read model, over every partition
	// readme:end
	_ = model
	return err
}

// projectionLag is README "Projections on Redis Streams", lag and
// readiness.
func projectionLag(w *projections.Worker, reg *hooks.Registry, promReg prometheus.Registerer) error {
	// readme:begin projection-lag
	lagGauges, err := promobs.NewProjectionCollector([]promobs.ProjectionSource{w})
	if err != nil {
		return err
	}
	promReg.MustRegister(lagGauges) // projection_lag_events, projection_lag_seconds, projection_replay_progress_ratio

	hook, err := promobs.NewProjectionHook(promReg) // projection_events_processed_total, projection_gaps_detected_total, ...
	if err != nil {
		return err
	}
	reg.MustRegister(hook, hooks.WithOperations(promobs.ProjectionOperations()...), hooks.WithPriority(10))

	http.HandleFunc("/readyz", func(rw http.ResponseWriter, r *http.Request) {
		if err := w.Ready(r.Context(), 30*time.Second); err != nil { // stopped, or more than 30 s behind
			http.Error(rw, err.Error(), http.StatusServiceUnavailable)
		}
	})
	// readme:end
	return nil
}

// projectionReplay is README "Projections on Redis Streams", replay.
func projectionReplay(ctx context.Context, w *projections.Worker) error {
	// readme:begin projection-replay
	err := w.Replay(ctx) // rebuild from the start of the streams, then swap in
	// meanwhile: p := w.ReplayProgress(): p.Done, p.Total, p.Rate, p.Remaining
	// readme:end
	return err
}

// The snippets are compiled, never run: this keeps them referenced.
var _ = []any{projectionWorker, projectionLag, projectionReplay, strconv.Itoa, time.Second, http.StatusOK}
