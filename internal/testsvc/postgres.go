package testsvc

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// postgresPingTimeout bounds the connection check and schema creation done by [Postgres].
const postgresPingTimeout = 10 * time.Second

// Postgres opens the database at [PostgresDSN] through pgx's database/sql
// driver ("pgx"), creates a schema of the test's own and returns a *sql.DB
// whose every connection has that schema as its search_path, together with the
// schema name. Tables created without a schema qualifier land in that schema,
// so parallel and repeated tests do not see each other's tables. When the test
// ends the *sql.DB is closed and the schema dropped with CASCADE.
//
// It fails the test (t.Fatalf, never a skip) when the server cannot be
// reached, naming the address and how to start the test services.
func Postgres(t testing.TB) (*sql.DB, string) {
	t.Helper()
	dsn := PostgresDSN()
	where := describeDSN(dsn)

	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("testsvc: invalid POSTGRES_DSN: %v", err)
	}
	admin.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), postgresPingTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		t.Fatalf("testsvc: PostgreSQL at %s (POSTGRES_DSN) is not reachable: %v\n%s", where, err, startHint)
	}

	schema := SchemaName(t)
	quoted := pgx.Identifier{schema}.Sanitize()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+quoted); err != nil {
		_ = admin.Close()
		t.Fatalf("testsvc: PostgreSQL at %s: creating schema %s: %v", where, schema, err)
	}

	db, err := sql.Open("pgx", DSNWithSearchPath(dsn, schema))
	if err != nil { // not expected: the same DSN parsed above
		_, _ = admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+quoted+" CASCADE")
		_ = admin.Close()
		t.Fatalf("testsvc: PostgreSQL at %s: opening with search_path %s: %v", where, schema, err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+quoted+" CASCADE"); err != nil {
			t.Errorf("testsvc: PostgreSQL at %s: dropping schema %s: %v", where, schema, err)
		}
		_ = admin.Close()
	})
	return db, schema
}

// SchemaName returns a fresh PostgreSQL schema name for t: "t_", the
// sanitized lower-cased test name and a random suffix, at most 55 bytes (under
// PostgreSQL's 63-byte identifier limit) and safe to use unquoted. [Postgres]
// uses it; it creates nothing by itself.
func SchemaName(t testing.TB) string {
	t.Helper()
	return "t_" + sanitize(t.Name(), 40, true) + "_" + randomSuffix()
}

// DSNWithSearchPath returns dsn with the search_path run-time parameter set to
// schema, replacing any search_path already in it, so that every connection
// opened with the result starts with that search_path. It accepts both the URL
// form (postgres://...) and the keyword form (host=... dbname=...) of a DSN.
// schema is written as is, so it must be a plain lower-case identifier such as
// those from [SchemaName].
func DSNWithSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	// Keyword form: a later setting overrides an earlier one.
	return strings.TrimSpace(dsn) + " search_path=" + schema
}

// describeDSN names the server, database and user of dsn for messages,
// without its password.
func describeDSN(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable POSTGRES_DSN)"
	}
	return fmt.Sprintf("%s:%d, database %q, user %q", cfg.Host, cfg.Port, cfg.Database, cfg.User)
}
