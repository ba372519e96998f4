package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// switchablePublisher returns a redisstream publisher whose client dials an
// unreachable address while down is set, and the real Redis otherwise.
func switchablePublisher(t *testing.T, down *atomic.Bool) message.Publisher {
	t.Helper()
	client := redis.NewClient(&redis.Options{
		Addr:       testsvc.RedisAddr(),
		MaxRetries: -1,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if down.Load() {
				addr = "127.0.0.1:1" // nothing listens there
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		// Connections opened while Redis was reachable must not outlive the
		// outage: a fresh one per command.
		PoolSize:        1,
		ConnMaxIdleTime: time.Millisecond,
	})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return &downPublisher{Publisher: pub, down: down}
}

// downPublisher also fails while down for connections the pool kept.
type downPublisher struct {
	message.Publisher
	down *atomic.Bool
}

func (p *downPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.down.Load() {
		var d net.Dialer
		if _, err := d.Dial("tcp", "127.0.0.1:1"); err != nil {
			return fmt.Errorf("redis unreachable: %w", err)
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				return metricValue(m), true
			}
		}
	}
	return 0, false
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestForwarder_broker_outage_retries_and_recovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hr := hooks.NewRegistry()
	rec := &recorder{}
	hr.MustRegister(rec)
	promReg := prometheus.NewPedanticRegistry()
	metrics, err := promobs.NewOutboxMetrics(promReg, promobs.OutboxMetricsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.Register(hr); err != nil {
		t.Fatal(err)
	}
	lg := &logs{}
	o := e.newOutbox(outbox.Config{Registry: hr, Logger: slog.New(lg)})
	mon := o.NewMonitor(wmsql.BeginnerFromStdSQL(e.db), 300*time.Millisecond)
	backlog, err := promobs.NewOutboxBacklogCollector(promobs.OutboxBacklogConfig{}, mon)
	if err != nil {
		t.Fatal(err)
	}
	promReg.MustRegister(backlog)

	topic := e.prefix + "orders"
	var down atomic.Bool
	down.Store(true)
	e.runForwarder(o, outbox.ForwarderConfig{Publisher: switchablePublisher(t, &down), ResendInterval: 50 * time.Millisecond, AckDeadline: 2 * time.Second})

	want := map[string]bool{}
	for i := range 5 {
		m := message.NewMessage(fmt.Sprintf("outage-%02d-000000000000000000000000", i), []byte(`{}`))
		want[m.UUID] = true
		e.saveOne(o, topic, m)
	}
	// While Redis is unreachable: retries run, the backlog stays, and once
	// its oldest message is older than the threshold the service is not
	// ready.
	deadline := time.Now().Add(waitFor)
	for len(rec.named(outbox.OpRetryFailed)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no outbox.retry_failed during the outage")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(350 * time.Millisecond)
	if v, _ := gaugeValue(t, promReg, "outbox_backlog_messages"); v != 5 {
		t.Errorf("outbox_backlog_messages during the outage = %v, want 5", v)
	}
	if v, _ := gaugeValue(t, promReg, "outbox_oldest_message_age_seconds"); v < 0.3 {
		t.Errorf("outbox_oldest_message_age_seconds during the outage = %v, want > 0.3", v)
	}
	if err := mon.Ready(context.Background()); !errors.Is(err, outbox.ErrBacklogTooOld) {
		t.Errorf("Ready during the outage = %v, want ErrBacklogTooOld", err)
	} else {
		t.Logf("Ready: %v", err)
	}
	if rec := lg.find("cannot forward message; it will be retried"); !strings.Contains(rec, "connection refused") {
		t.Errorf("no clear log of the broker error; got %q", rec)
	}
	if v, _ := gaugeValue(t, promReg, "outbox_retries_total"); v == 0 {
		t.Errorf("outbox_retries_total = 0 during the outage")
	}

	down.Store(false)
	e.waitStream(topic, want)
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })
	if v, _ := gaugeValue(t, promReg, "outbox_backlog_messages"); v != 0 {
		t.Errorf("outbox_backlog_messages after recovery = %v, want 0", v)
	}
	if v, _ := gaugeValue(t, promReg, "outbox_oldest_message_age_seconds"); v != 0 {
		t.Errorf("outbox_oldest_message_age_seconds after recovery = %v, want 0", v)
	}
	if err := mon.Ready(context.Background()); err != nil {
		t.Errorf("Ready after recovery = %v", err)
	}
	ok := false
	for _, op := range rec.named(outbox.OpRetryFailed) {
		if op.err == nil {
			ok = true
		}
	}
	if !ok {
		t.Errorf("no successful outbox.retry_failed after recovery")
	}
	if v, _ := gaugeValue(t, promReg, "outbox_time_in_outbox_seconds"); v < 5 {
		t.Errorf("outbox_time_in_outbox_seconds observations = %v, want at least 5", v)
	}
}

func TestForwarder_dead_letters_undecodable_envelopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hr := hooks.NewRegistry()
	rec := &recorder{}
	hr.MustRegister(rec)
	lg := &logs{}
	o := e.newOutbox(outbox.Config{Registry: hr, Logger: slog.New(lg), Topic: "dl"})
	topic := e.prefix + "orders"

	before := message.NewMessage("good-before-00000000000000000000", []byte(`{}`))
	e.saveOne(o, topic, before)
	// Rows the forwarder cannot unwrap: not an envelope, and metadata that
	// is not a JSON object of strings (watermill-sql alone would fail every
	// read on it).
	if _, err := e.db.Exec(`INSERT INTO "watermill_dl" (uuid, payload, metadata, transaction_id) VALUES
		('bad-envelope', '{"hello":"world"}', '{}', pg_current_xact_id()),
		('bad-metadata', '{"destination_topic":"x","uuid":"u","payload":null,"metadata":{}}', '{"n":1}', pg_current_xact_id())`); err != nil {
		t.Fatal(err)
	}
	after := message.NewMessage("good-after-000000000000000000000", []byte(`{}`))
	e.saveOne(o, topic, after)

	e.runForwarder(o, outbox.ForwarderConfig{})
	e.waitStream(topic, map[string]bool{before.UUID: true, after.UUID: true})
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })

	rows, err := e.db.Query(`SELECT uuid, error FROM "watermill_dead_dl" ORDER BY uuid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id, msg string
		if err := rows.Scan(&id, &msg); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+": "+msg)
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "bad-envelope: outbox: envelope cannot be decoded: no destination_topic") ||
		!strings.HasPrefix(got[1], "bad-metadata: outbox: envelope cannot be decoded: metadata column") {
		t.Errorf("dead-letter rows = %q", got)
	}
	if r := lg.find("envelope cannot be decoded"); !strings.Contains(r, "bad-envelope") && lg.find("bad-metadata") == "" {
		t.Errorf("no error log naming the undecodable message")
	}
	if n := len(rec.named(outbox.OpDeadLetter)); n != 2 {
		t.Errorf("%d outbox.dead_letter operations, want 2", n)
	}
}

func TestBacklog_counts_rows_held_back_by_an_open_transaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{})
	db := wmsql.BeginnerFromStdSQL(e.db)
	topic := e.prefix + "orders"

	// Before any forwarder subscribed there is no offsets row.
	b, err := o.Backlog(context.Background(), db)
	if err != nil || b.Messages != 0 || !b.Oldest.IsZero() {
		t.Fatalf("empty outbox: %+v, %v", b, err)
	}
	first := message.NewMessage("first-0000000000000000000000000", []byte(`{}`))
	e.saveOne(o, topic, first)
	// (HeldBack is not checked here: pg_snapshot_xmin is shared by the
	// whole server, and parallel tests have transactions open.)
	if b, err := o.Backlog(context.Background(), db); err != nil || b.Messages != 1 || b.Oldest.IsZero() {
		t.Fatalf("before the first Subscribe: %+v, %v; want 1 message", b, err)
	}

	// An open transaction with a transaction ID holds back every row
	// committed after it.
	long, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = long.Rollback() }()
	if _, err := long.Exec(`SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	held := []*message.Message{
		message.NewMessage("held-1-0000000000000000000000000", []byte(`{}`)),
		message.NewMessage("held-2-0000000000000000000000000", []byte(`{}`)),
	}
	for _, m := range held {
		e.saveOne(o, topic, m)
	}
	e.runForwarder(o, outbox.ForwarderConfig{})
	e.waitStream(topic, map[string]bool{first.UUID: true})
	b = e.waitBacklog(o, "only the held-back rows", func(b outbox.Backlog) bool { return b.Messages == 2 })
	if b.HeldBack != 2 {
		t.Errorf("backlog %+v, want both rows held back", b)
	}
	time.Sleep(200 * time.Millisecond)
	if got := e.readStream(topic); len(got) != 1 {
		t.Errorf("%d messages forwarded while held back, want 1", len(got))
	}
	if err := long.Rollback(); err != nil {
		t.Fatal(err)
	}
	e.waitStream(topic, map[string]bool{held[0].UUID: true, held[1].UUID: true})
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })
}

func TestCleanup_deletes_only_forwarded_rows_past_retention(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{Topic: "clean"})
	db := wmsql.BeginnerFromStdSQL(e.db)
	topic := e.prefix + "orders"
	count := func() int {
		var n int
		if err := e.db.QueryRow(`SELECT count(*) FROM "watermill_clean"`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Before any forwarder ran, nothing is acknowledged, so nothing goes.
	old := message.NewMessage("old-000000000000000000000000000", []byte(`{}`))
	e.saveOne(o, topic, old)
	if n, err := o.Cleanup(context.Background(), db, 0); err != nil || n != 0 {
		t.Fatalf("Cleanup before forwarding: %d, %v", n, err)
	}
	stop := e.runForwarder(o, outbox.ForwarderConfig{Retention: -1})
	e.waitStream(topic, map[string]bool{old.UUID: true})
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })
	stop()
	pending := message.NewMessage("pending-0000000000000000000000", []byte(`{}`))
	e.saveOne(o, topic, pending)

	if n, err := o.Cleanup(context.Background(), db, time.Hour); err != nil || n != 0 {
		t.Errorf("Cleanup with a retention of an hour: %d, %v; want nothing deleted", n, err)
	}
	time.Sleep(20 * time.Millisecond)
	n, err := o.Cleanup(context.Background(), db, 10*time.Millisecond)
	if err != nil || n != 1 {
		t.Errorf("Cleanup past retention: %d, %v; want the one forwarded row", n, err)
	}
	if c := count(); c != 1 {
		t.Errorf("%d rows left, want the unforwarded one", c)
	}
	// The forwarder still finds its place.
	e.runForwarder(o, outbox.ForwarderConfig{Retention: 10 * time.Millisecond, CleanupInterval: 20 * time.Millisecond})
	e.waitStream(topic, map[string]bool{pending.UUID: true})
	deadline := time.Now().Add(waitFor)
	for count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the running forwarder's cleanup never deleted the forwarded row")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := e.readStream(topic); len(got) != 2 {
		t.Errorf("%d messages on the stream, want 2 (no redelivery after cleanup)", len(got))
	}
}

func TestPostgres_unreachable_is_a_clear_error(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{})
	lg := &logs{}
	o2, err := outbox.New(outbox.Config{Logger: slog.New(lg)})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := sqlOpen(withParam("postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", "application_name", e.app+"_x"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bad.Close() })
	badDB := wmsql.BeginnerFromStdSQL(bad)

	if err := o.CreateSchema(context.Background(), badDB); err == nil || !strings.Contains(err.Error(), "cannot create outbox schema") {
		t.Errorf("CreateSchema: %v", err)
	}
	if err := o.NewMonitor(badDB, time.Second).Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "outbox: cannot query backlog") {
		t.Errorf("Ready: %v", err)
	}
	f, err := o2.NewForwarder(outbox.ForwarderConfig{DB: badDB, Publisher: testsvc.RedisPublisher(t), RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	deadline := time.Now().Add(waitFor)
	for lg.find("forwarder cannot read the outbox") == "" {
		select {
		case err := <-done:
			t.Fatalf("Run ended while the database was unreachable: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the forwarder never reported the unreachable database")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if r := lg.find("forwarder cannot read the outbox"); !strings.Contains(r, "database unreachable") {
		t.Errorf("log %q does not say the database is unreachable", r)
	}
}
