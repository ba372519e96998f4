package projections_test

import (
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

func newRedisWorker(t testing.TB, cfg projections.Config) (*projections.Worker, *projections.RedisStore) {
	t.Helper()
	client, prefix := testsvc.RedisPrefix(t)
	store, err := projections.NewRedisStore(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store == nil {
		cfg.Store = store
	}
	if cfg.Source == nil {
		cfg.Source = projections.NewRedisSource(client)
	}
	for i, s := range cfg.Streams {
		cfg.Streams[i] = prefix + s
	}
	if cfg.Block == 0 {
		cfg.Block = 50 * time.Millisecond
	}
	w, err := projections.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, store
}

func TestWorker_applies_every_event_once(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	w, _ := newRedisWorker(t, projections.Config{Projection: sumProjection("sums"), Streams: []string{"events"}, BatchSize: 64})
	stream := w.StreamNames()[0]
	addEvents(t, client, stream, 0, 500, 7)
	stop := start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	addEvents(t, client, stream, 500, 1000, 7)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	compareModels(t, readModel(t, w), expectedModel(0, 1000, 7))

	// A restart resumes from the checkpoint: nothing is applied twice.
	stop = start(t, w)
	addEvents(t, client, stream, 1000, 1100, 7)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	compareModels(t, readModel(t, w), expectedModel(0, 1100, 7))
}
