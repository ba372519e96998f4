package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/outbox"
)

func TestTxPublisher_rolled_back_transaction_forwards_nothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rec := &recorder{}
	reg := hooks.NewRegistry()
	reg.MustRegister(rec)
	o := e.newOutbox(outbox.Config{Registry: reg})
	topic := e.prefix + "orders"
	e.runForwarder(o, outbox.ForwarderConfig{})

	ctx := context.Background()
	rolled := message.NewMessage("rolled-back-0000000000000000000000", []byte(`{"n":1}`))
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.TxPublisher(tx).Publish(topic, rolled); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	kept := message.NewMessage("committed-00000000000000000000000", []byte(`{"n":2}`))
	e.saveOne(o, topic, kept)

	got := e.waitStream(topic, map[string]bool{kept.UUID: true})
	e.waitBacklog(o, "empty", func(b outbox.Backlog) bool { return b.Messages == 0 })
	for _, a := range got {
		if a.uuid == rolled.UUID {
			t.Errorf("the message of the rolled-back transaction was forwarded")
		}
	}
	if len(got) != 1 || got[0].payload != `{"n":2}` {
		t.Errorf("stream = %+v, want the one committed message", got)
	}
	saves := rec.named(outbox.OpSaveEvents)
	if len(saves) != 2 {
		t.Fatalf("%d save operations, want 2", len(saves))
	}
	if v, _ := attr(saves[0], outbox.AttrEventCount); v.Int64() != 1 {
		t.Errorf("outbox.event_count = %v, want 1", v)
	}
	if v, _ := attr(saves[0], outbox.AttrTopic); v.String() != topic {
		t.Errorf("topic = %v, want %s", v, topic)
	}
}

func TestTxPublisher_stamps_at_save_time(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{})
	topic := e.prefix + "orders"

	ctx := hooks.WithCausationID(hooks.WithCorrelationID(context.Background(), "corr-1234"), "cause-5678")
	msg := message.NewMessage("stamped-000000000000000000000000", []byte(`{}`))
	msg.SetContext(ctx)
	before := time.Now()
	e.saveOne(o, topic, msg)
	for _, k := range []string{contract.CorrelationIDKey, contract.CausationIDKey, contract.PublishedAtKey} {
		if msg.Metadata.Get(k) == "" {
			t.Errorf("metadata %s not stamped at save: %v", k, msg.Metadata)
		}
	}
	time.Sleep(50 * time.Millisecond) // the forward happens later than the save
	e.runForwarder(o, outbox.ForwarderConfig{})
	got := e.waitStream(topic, map[string]bool{msg.UUID: true})
	md := got[0].metadata
	if md.Get(contract.CorrelationIDKey) != "corr-1234" || md.Get(contract.CausationIDKey) != "cause-5678" {
		t.Errorf("correlation/causation on the wire = %q/%q", md.Get(contract.CorrelationIDKey), md.Get(contract.CausationIDKey))
	}
	at, err := time.Parse(time.RFC3339Nano, md.Get(contract.PublishedAtKey))
	if err != nil {
		t.Fatalf("published_at %q: %v", md.Get(contract.PublishedAtKey), err)
	}
	if at.Before(before.Add(-time.Second)) || at.After(before.Add(40*time.Millisecond)) {
		t.Errorf("published_at %s is not the save time (%s)", at, before)
	}
}

func TestTxPublisher_after_commit_is_a_clear_error(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{})
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	err = o.TxPublisher(tx).Publish("orders", message.NewMessage("late-0000000000000000000000000000", nil))
	if !errors.Is(err, sql.ErrTxDone) || !strings.Contains(err.Error(), `outbox: cannot save 1 message(s) for topic "orders"`) {
		t.Errorf("err = %v, want a wrapped sql.ErrTxDone naming the topic", err)
	}
	if err := o.TxPublisher(tx).Publish("", message.NewMessage("x", nil)); !errors.Is(err, outbox.ErrNoTopic) {
		t.Errorf("empty topic: err = %v, want ErrNoTopic", err)
	}
	if err := o.TxPublisher(tx).Publish("orders", nil); !errors.Is(err, outbox.ErrNilMessage) {
		t.Errorf("nil message: err = %v, want ErrNilMessage", err)
	}
}

func TestPgxTxPublisher_and_pgx_forwarder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{})
	topic := e.prefix + "orders"
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testsvc.DSNWithSearchPath(testsvc.PostgresDSN(), e.schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	e.runForwarder(o, outbox.ForwarderConfig{DB: wmsql.BeginnerFromPgx(pool)})
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := message.NewMessage("pgx-0000000000000000000000000000", []byte(`{"pgx":true}`))
	if err := o.PgxTxPublisher(tx).Publish(topic, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := e.waitStream(topic, map[string]bool{msg.UUID: true})
	if got[0].payload != `{"pgx":true}` {
		t.Errorf("payload = %s", got[0].payload)
	}
}

func TestCreateSchema_is_explicit_and_idempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o, err := outbox.New(outbox.Config{Topic: "explicit"})
	if err != nil {
		t.Fatal(err)
	}
	save := func() error {
		tx, err := e.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		return o.TxPublisher(tx).Publish("orders", message.NewMessage("s-000000000000000000000000000000", []byte(`{}`)))
	}
	if err := save(); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("publish before CreateSchema: err = %v, want the missing table (no implicit creation)", err)
	}
	db := wmsql.BeginnerFromStdSQL(e.db)
	for range 2 {
		if err := o.CreateSchema(context.Background(), db); err != nil {
			t.Fatalf("CreateSchema: %v", err)
		}
	}
	if err := save(); err != nil {
		t.Fatalf("publish after CreateSchema: %v", err)
	}
	// The documented SQL is what CreateSchema runs: it works on its own.
	o2, _ := outbox.New(outbox.Config{Topic: "by_sql"})
	if _, err := e.db.Exec(o2.SchemaSQL()); err != nil {
		t.Fatalf("running SchemaSQL: %v", err)
	}
	var n int
	if err := e.db.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename IN ('watermill_by_sql', 'watermill_offsets_by_sql', 'watermill_dead_by_sql')`, e.schema).Scan(&n); err != nil || n != 3 {
		t.Errorf("tables created by SchemaSQL: %d, %v; want 3", n, err)
	}
}

func TestNew_validates_table_names(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		modify  func(*outbox.Config)
		wantErr string
	}{
		{"valid default", func(*outbox.Config) {}, ""},
		{"valid punctuation", func(c *outbox.Config) { c.Topic = "shop.orders-v2:eu$1_x" }, ""},
		{"longest topic", func(c *outbox.Config) { c.Topic = strings.Repeat("a", outbox.MaxTopicLength) }, ""},
		{"topic over 63-byte table names", func(c *outbox.Config) { c.Topic = strings.Repeat("a", outbox.MaxTopicLength+1) }, "63-byte identifier limit"},
		{"quote in topic", func(c *outbox.Config) { c.Topic = `a"b` }, `has '"' at byte 1`},
		{"space in topic", func(c *outbox.Config) { c.Topic = "a b" }, "allowed are ASCII letters"},
		{"non-ASCII topic", func(c *outbox.Config) { c.Topic = "bestellungen_ü" }, "allowed are ASCII letters"},
		{"valid schema", func(c *outbox.Config) { c.Schema = "app_1" }, ""},
		{"schema with dot", func(c *outbox.Config) { c.Schema = "a.b" }, "schema"},
		{"schema too long", func(c *outbox.Config) { c.Schema = strings.Repeat("s", 64) }, "longer than 63"},
		{"negative batch", func(c *outbox.Config) { c.SubscribeBatchSize = -1 }, "negative SubscribeBatchSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := outbox.Config{}
			tt.modify(&cfg)
			_, err := outbox.New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: err = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "invalid config") {
				t.Errorf("err = %v, want it to start with invalid config", err)
			}
		})
	}
}

func TestSchema_qualified_tables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := e.newOutbox(outbox.Config{Schema: e.schema, Topic: "qualified"})
	if !strings.Contains(o.SchemaSQL(), `"`+e.schema+`"."watermill_qualified"`) {
		t.Errorf("SchemaSQL does not qualify the table: %s", o.SchemaSQL())
	}
	topic := e.prefix + "q"
	e.runForwarder(o, outbox.ForwarderConfig{})
	msg := message.NewMessage("q-000000000000000000000000000000", []byte(`{}`))
	e.saveOne(o, topic, msg)
	e.waitStream(topic, map[string]bool{msg.UUID: true})
}
