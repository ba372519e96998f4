package outbox

import (
	"context"
	"fmt"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// SchemaSQL returns the SQL that creates the outbox's tables, for a
// migration tool or a DBA. It is what [Outbox.CreateSchema] runs, without
// the advisory lock. The messages and offsets tables are exactly those of
// watermill-sql v4's DefaultPostgreSQLSchema and
// DefaultPostgreSQLOffsetsAdapter, so that its subscriber reads them; the
// dead-letter table is this package's (see [ForwarderConfig]). Every
// statement is idempotent (IF NOT EXISTS).
func (o *Outbox) SchemaSQL() string {
	return o.schemaStatements()[0] + ";\n\n" + o.schemaStatements()[1] + ";\n\n" + o.schemaStatements()[2] + ";\n"
}

func (o *Outbox) schemaStatements() [3]string {
	t := o.tables
	return [3]string{
		`CREATE TABLE IF NOT EXISTS ` + t.messages + ` (
	"offset" BIGSERIAL,
	"uuid" VARCHAR(36) NOT NULL,
	"created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	"payload" JSON DEFAULT NULL,
	"metadata" JSON DEFAULT NULL,
	"transaction_id" xid8 NOT NULL,
	PRIMARY KEY ("transaction_id", "offset")
)`,
		`CREATE TABLE IF NOT EXISTS ` + t.offsets + ` (
	consumer_group VARCHAR(255) NOT NULL,
	offset_acked BIGINT,
	last_processed_transaction_id xid8 NOT NULL,
	PRIMARY KEY (consumer_group)
)`,
		`CREATE TABLE IF NOT EXISTS ` + t.deadLetter + ` (
	"uuid" VARCHAR(36) NOT NULL,
	"payload" BYTEA,
	"metadata" JSON DEFAULT NULL,
	"error" TEXT NOT NULL,
	"dead_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY ("uuid")
)`,
	}
}

// schemaLock is the advisory lock key taken while creating tables:
// concurrent CREATE TABLE IF NOT EXISTS of one name can fail with a unique
// violation in PostgreSQL. It is watermill-sql's own key, so that its schema
// initialization and ours do not race either.
var schemaLock = wmsql.DefaultSchemaInitializationLock("watermill")

// CreateSchema creates the outbox's tables (see [Outbox.SchemaSQL]) in a
// transaction of its own on db, holding an advisory lock so that processes
// starting together do not collide. Call it once at startup or from a
// migration, never inside a business transaction: DDL there would take
// locks for the rest of the user's transaction. Nothing else in this
// package creates tables.
func (o *Outbox) CreateSchema(ctx context.Context, db wmsql.Beginner) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot create outbox schema: cannot begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", schemaLock)); err != nil {
		return fmt.Errorf("cannot create outbox schema: cannot lock: %w", err)
	}
	for _, q := range o.schemaStatements() {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("cannot create outbox schema: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot create outbox schema: cannot commit: %w", err)
	}
	return nil
}
