package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/outbox"
)

// waitFor bounds every wait of these tests for something to happen.
const waitFor = 60 * time.Second

// env is one test's PostgreSQL schema and Redis prefix.
type env struct {
	t      testing.TB
	db     *sql.DB // the test's schema, application_name of its own
	app    string  // that application_name
	schema string
	redis  *redis.Client
	prefix string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	_, schema := testsvc.Postgres(t)
	client, prefix := testsvc.RedisPrefix(t)
	e := &env{t: t, schema: schema, redis: client, prefix: prefix}
	e.db, e.app = e.openDB("main")
	return e
}

// openDB opens a *sql.DB on the test's schema whose connections carry an
// application_name unique to the test and role, so that a test can aim
// pg_terminate_backend at them and at nothing else.
func (e *env) openDB(role string) (*sql.DB, string) {
	e.t.Helper()
	app := e.schema + "_" + role
	if len(app) > 63 {
		app = app[len(app)-63:]
	}
	dsn := withParam(testsvc.DSNWithSearchPath(testsvc.PostgresDSN(), e.schema), "application_name", app)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	db.SetMaxOpenConns(16)
	e.t.Cleanup(func() { _ = db.Close() })
	return db, app
}

func withParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " " + key + "=" + value
}

// kill terminates the server processes of the connections named app.
func (e *env) kill(app string) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	err := e.db.QueryRowContext(ctx,
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
		app).Scan(&n)
	if err != nil {
		e.t.Errorf("pg_terminate_backend: %v", err)
	}
	return n
}

// newOutbox creates the outbox of cfg with its schema.
func (e *env) newOutbox(cfg outbox.Config) *outbox.Outbox {
	e.t.Helper()
	o, err := outbox.New(cfg)
	if err != nil {
		e.t.Fatalf("outbox.New: %v", err)
	}
	if err := o.CreateSchema(context.Background(), wmsql.BeginnerFromStdSQL(e.db)); err != nil {
		e.t.Fatalf("CreateSchema: %v", err)
	}
	return o
}

// runForwarder starts a forwarder and returns a stop function that cancels
// its context and waits for Run to return.
func (e *env) runForwarder(o *outbox.Outbox, cfg outbox.ForwarderConfig) (stop func()) {
	e.t.Helper()
	if cfg.DB == nil {
		cfg.DB = wmsql.BeginnerFromStdSQL(e.db)
	}
	if cfg.Publisher == nil {
		cfg.Publisher = testsvc.RedisPublisher(e.t)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.ResendInterval == 0 {
		cfg.ResendInterval = 20 * time.Millisecond
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 20 * time.Millisecond
	}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = 10 * time.Second
	}
	f, err := o.NewForwarder(cfg)
	if err != nil {
		e.t.Fatalf("NewForwarder: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	select {
	case <-f.Running():
	case err := <-done:
		e.t.Fatalf("forwarder stopped before running: %v", err)
	case <-time.After(waitFor):
		e.t.Fatalf("forwarder not running after %s", waitFor)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("forwarder Run: %v", err)
				}
			case <-time.After(waitFor):
				e.t.Errorf("forwarder did not stop within %s", waitFor)
			}
			_ = f.Close()
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// arrived is one message read back from a Redis stream.
type arrived struct {
	uuid     string
	metadata message.Metadata
	payload  string
}

// readStream returns every message of the stream, in order, duplicates
// included.
func (e *env) readStream(stream string) []arrived {
	e.t.Helper()
	entries, err := e.redis.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		e.t.Fatalf("XRANGE %s: %v", stream, err)
	}
	out := make([]arrived, 0, len(entries))
	for _, en := range entries {
		m, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(en.Values)
		if err != nil {
			e.t.Fatalf("decode stream entry %s: %v", en.ID, err)
		}
		out = append(out, arrived{uuid: m.UUID, metadata: m.Metadata, payload: string(m.Payload)})
	}
	return out
}

// waitStream waits until the stream holds every UUID of want at least once.
func (e *env) waitStream(stream string, want map[string]bool) []arrived {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := e.readStream(stream)
		seen := make(map[string]bool, len(got))
		for _, a := range got {
			seen[a.uuid] = true
		}
		missing := 0
		for id := range want {
			if !seen[id] {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("after %s, %d of %d messages have not arrived on %s (got %d entries)", waitFor, missing, len(want), stream, len(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitBacklog waits until the outbox's backlog satisfies ok.
func (e *env) waitBacklog(o *outbox.Outbox, what string, ok func(outbox.Backlog) bool) outbox.Backlog {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		b, err := o.Backlog(context.Background(), wmsql.BeginnerFromStdSQL(e.db))
		if err == nil && ok(b) {
			return b
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("backlog never became %s: last %+v, %v", what, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// saveOne saves one message for topic in a transaction of its own.
func (e *env) saveOne(o *outbox.Outbox, topic string, msg *message.Message) {
	e.t.Helper()
	tx, err := e.db.BeginTx(context.Background(), nil)
	if err != nil {
		e.t.Fatalf("begin: %v", err)
	}
	if err := o.TxPublisher(tx).Publish(topic, msg); err != nil {
		_ = tx.Rollback()
		e.t.Fatalf("publish: %v", err)
	}
	if err := tx.Commit(); err != nil {
		e.t.Fatalf("commit: %v", err)
	}
}

// recorder is a hook that records the operations it sees.
type recorder struct {
	mu  sync.Mutex
	ops []recordedOp
}

type recordedOp struct {
	name  string
	attrs []slog.Attr
	err   error
}

func (r *recorder) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	err := next(ctx)
	r.mu.Lock()
	r.ops = append(r.ops, recordedOp{name: op.Name, attrs: op.Attrs, err: err})
	r.mu.Unlock()
	return err
}

func (r *recorder) named(prefix string) []recordedOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recordedOp
	for _, op := range r.ops {
		if strings.HasPrefix(op.name, prefix) {
			out = append(out, op)
		}
	}
	return out
}

func attr(op recordedOp, key string) (slog.Value, bool) {
	for _, a := range op.attrs {
		if a.Key == key {
			return a.Value, true
		}
	}
	return slog.Value{}, false
}

// logs collects slog records.
type logs struct {
	mu   sync.Mutex
	recs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) find(sub string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if strings.Contains(r, sub) {
			return r
		}
	}
	return ""
}

func wmsqlStd(db *sql.DB) wmsql.Beginner { return wmsql.BeginnerFromStdSQL(db) }

func sqlOpen(dsn string) (*sql.DB, error) { return sql.Open("pgx", dsn) }
