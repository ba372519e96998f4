package testsvc

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeTB wraps a real testing.TB and intercepts failing, skipping and
// cleanup registration, so a test can observe what the helpers do to their
// own test. Fatal and Skip calls end the calling goroutine like the real ones.
type fakeTB struct {
	testing.TB
	name string

	mu       sync.Mutex
	fatal    string
	errors   []string
	skipped  bool
	cleanups []func()
}

func newFakeTB(t *testing.T, name string) *fakeTB { return &fakeTB{TB: t, name: name} }

func (f *fakeTB) Name() string { return f.name }
func (f *fakeTB) Helper()      {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) FailNow()          { f.Fatalf("FailNow") }

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) SkipNow() {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Skip(args ...any)                 { f.SkipNow() }
func (f *fakeTB) Skipf(format string, args ...any) { f.SkipNow() }

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// run calls fn(f) in its own goroutine, so that Fatal/Skip can end it, and
// reports whether fn returned normally.
func (f *fakeTB) run(fn func(testing.TB)) (returned bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
		returned = true
	}()
	<-done
	return returned
}

// runCleanups runs the registered cleanups, last registered first.
func (f *fakeTB) runCleanups() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func countKeys(t *testing.T, client *redis.Client, prefix string) int {
	t.Helper()
	ctx := context.Background()
	var (
		cursor uint64
		n      int
	)
	for {
		keys, next, err := client.Scan(ctx, cursor, escapeGlob(prefix)+"*", 1000).Result()
		if err != nil {
			t.Fatalf("SCAN %q: %v", prefix, err)
		}
		n += len(keys)
		if next == 0 {
			return n
		}
		cursor = next
	}
}

func TestEnvDefaultsAndOverrides(t *testing.T) {
	t.Setenv("REDIS_ADDR", "")
	t.Setenv("POSTGRES_DSN", "")
	if got := RedisAddr(); got != DefaultRedisAddr {
		t.Errorf("RedisAddr() = %q, want default %q", got, DefaultRedisAddr)
	}
	if got := PostgresDSN(); got != DefaultPostgresDSN {
		t.Errorf("PostgresDSN() = %q, want default %q", got, DefaultPostgresDSN)
	}
	t.Setenv("REDIS_ADDR", "127.0.0.1:6390")
	t.Setenv("POSTGRES_DSN", "postgres://u@127.0.0.1:5440/db")
	if got := RedisAddr(); got != "127.0.0.1:6390" {
		t.Errorf("RedisAddr() = %q, want the REDIS_ADDR value", got)
	}
	if got := PostgresDSN(); got != "postgres://u@127.0.0.1:5440/db" {
		t.Errorf("PostgresDSN() = %q, want the POSTGRES_DSN value", got)
	}
}

func TestPrefixUniqueAndSafe(t *testing.T) {
	t.Parallel()
	names := []string{"TestX", "TestX/sub case", "Test*?[glob]\\chars", strings.Repeat("Long", 40), "Tëst/ünïcode"}
	seen := map[string]bool{}
	for _, name := range names {
		f := newFakeTB(t, name)
		for range 200 {
			p := Prefix(f)
			if seen[p] {
				t.Fatalf("Prefix returned %q twice", p)
			}
			seen[p] = true
			if !strings.HasPrefix(p, "wobs:") || !strings.HasSuffix(p, ":") {
				t.Errorf("Prefix = %q, want wobs:<name>:<random>:", p)
			}
			if strings.ContainsAny(p, "*?[]\\ ") {
				t.Errorf("Prefix = %q contains glob metacharacters or spaces", p)
			}
			if len(p) > 5+48+1+12+1 {
				t.Errorf("Prefix = %q is %d bytes long", p, len(p))
			}
		}
	}
	f := newFakeTB(t, "TestOrders/retry_3")
	if p := Prefix(f); !strings.HasPrefix(p, "wobs:TestOrders_retry_3:") {
		t.Errorf("Prefix = %q, want it to start with the sanitized test name", p)
	}
}

func TestRedisKeysRemovedAfterCleanup(t *testing.T) {
	t.Parallel()
	observer := Redis(t)
	ctx := context.Background()

	var prefix, neighbour string
	t.Run("user", func(t *testing.T) {
		client, p := RedisPrefix(t)
		prefix = p
		// Shares everything with prefix but its last byte: must survive the cleanup.
		neighbour = strings.TrimSuffix(p, ":") + "-neighbour"
		if err := observer.Set(ctx, neighbour, "keep", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		// More keys than one SCAN batch, of several types.
		pipe := client.Pipeline()
		for i := range 2500 {
			pipe.Set(ctx, p+"k:"+strconv.Itoa(i), i, 0)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: p + "stream", Values: map[string]any{"a": "b"}})
		pipe.HSet(ctx, p+"hash", "f", "v")
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if n := countKeys(t, observer, p); n != 2502 {
			t.Fatalf("before cleanup: %d keys with prefix %q, want 2502", n, p)
		}
	})
	if prefix == "" {
		t.Fatal("subtest did not run")
	}
	if n := countKeys(t, observer, prefix); n != 0 {
		t.Errorf("after cleanup: %d keys with prefix %q remain, want 0", n, prefix)
	}
	if n, err := observer.Exists(ctx, neighbour).Result(); err != nil || n != 1 {
		t.Errorf("neighbour key %q was deleted by the cleanup (exists=%d, err=%v)", neighbour, n, err)
	}
	observer.Del(ctx, neighbour)
}

func TestDeleteKeysMatchesPrefixLiterally(t *testing.T) {
	t.Parallel()
	client, base := RedisPrefix(t)
	ctx := context.Background()
	weird := base + `a*b?[c]\:`
	literal := weird + "1"
	// Matched by weird+"*" read as a glob pattern, but does not start with weird.
	lookalike := base + "aZZbQc:1"
	for _, k := range []string{literal, lookalike} {
		if err := client.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := DeleteKeys(ctx, client, weird)
	if err != nil || n != 1 {
		t.Fatalf("DeleteKeys(%q) = %d, %v; want 1, nil", weird, n, err)
	}
	if got, _ := client.Exists(ctx, literal).Result(); got != 0 {
		t.Errorf("key %q was not deleted", literal)
	}
	if got, _ := client.Exists(ctx, lookalike).Result(); got != 1 {
		t.Errorf("key %q was deleted though it does not have the prefix", lookalike)
	}
	if _, err := DeleteKeys(ctx, client, ""); err == nil {
		t.Error("DeleteKeys with an empty prefix did not fail")
	}
}

func TestRedisUnreachableFailsLoudly(t *testing.T) {
	t.Setenv("REDIS_ADDR", "127.0.0.1:1")
	f := newFakeTB(t, t.Name())
	if f.run(func(tb testing.TB) { Redis(tb) }) {
		t.Fatal("Redis returned for an unreachable server")
	}
	if f.skipped {
		t.Fatal("Redis skipped the test instead of failing it")
	}
	for _, want := range []string{"127.0.0.1:1", "REDIS_ADDR", "make test", "scripts/test-services.sh"} {
		if !strings.Contains(f.fatal, want) {
			t.Errorf("failure message %q does not mention %q", f.fatal, want)
		}
	}
}

func TestPostgresUnreachableFailsLoudly(t *testing.T) {
	t.Setenv("POSTGRES_DSN", "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&connect_timeout=5")
	f := newFakeTB(t, t.Name())
	if f.run(func(tb testing.TB) { Postgres(tb) }) {
		t.Fatal("Postgres returned for an unreachable server")
	}
	if f.skipped {
		t.Fatal("Postgres skipped the test instead of failing it")
	}
	for _, want := range []string{"127.0.0.1:1", "POSTGRES_DSN", "make test", "scripts/test-services.sh"} {
		if !strings.Contains(f.fatal, want) {
			t.Errorf("failure message %q does not mention %q", f.fatal, want)
		}
	}
	if strings.Contains(f.fatal, "hunter2") {
		t.Errorf("failure message %q reveals the password", f.fatal)
	}
}

func schemaExists(t *testing.T, db *sql.DB, schema string) bool {
	t.Helper()
	var exists bool
	err := db.QueryRowContext(context.Background(),
		"SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists)
	if err != nil {
		t.Fatalf("looking up schema %s: %v", schema, err)
	}
	return exists
}

func TestPostgresSchemaCreatedUsedAndDropped(t *testing.T) {
	t.Parallel()
	observer, err := sql.Open("pgx", PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = observer.Close() })
	ctx := context.Background()

	var schema string
	t.Run("user", func(t *testing.T) {
		db, s := Postgres(t)
		schema = s
		if !strings.HasPrefix(s, "t_testpostgresschemacreatedusedanddropped") || len(s) > 63 {
			t.Errorf("schema name %q: want t_<sanitized test name>_<random>, at most 63 bytes", s)
		}
		if !schemaExists(t, observer, s) {
			t.Fatalf("schema %s does not exist", s)
		}
		// Every connection of the pool, not just the first, uses the schema.
		db.SetMaxOpenConns(3)
		conns := make([]*sql.Conn, 3)
		for i := range conns {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
			var current string
			if err := c.QueryRowContext(ctx, "SELECT current_schema()").Scan(&current); err != nil {
				t.Fatal(err)
			}
			if current != s {
				t.Errorf("connection %d: current_schema() = %q, want %q", i, current, s)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
		if _, err := db.ExecContext(ctx, "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2)"); err != nil {
			t.Fatal(err)
		}
		var n int
		q := fmt.Sprintf("SELECT count(*) FROM %s.items", s)
		if err := observer.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%s = %d, %v; want 2 rows in the test's schema", q, n, err)
		}
	})
	if schema == "" {
		t.Fatal("subtest did not run")
	}
	if schemaExists(t, observer, schema) {
		t.Errorf("schema %s still exists after the test's cleanup", schema)
	}
}

func TestPostgresSchemasAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db1, s1 := Postgres(t)
	db2, s2 := Postgres(t)
	if s1 == s2 {
		t.Fatalf("two calls returned the same schema %q", s1)
	}
	for i, db := range []*sql.DB{db1, db2} {
		if _, err := db.ExecContext(ctx, "CREATE TABLE events (name text)"); err != nil {
			t.Fatalf("db%d: %v", i+1, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO events VALUES ($1)", fmt.Sprint("from db", i+1)); err != nil {
			t.Fatalf("db%d: %v", i+1, err)
		}
	}
	for i, db := range []*sql.DB{db1, db2} {
		var names []string
		rows, err := db.QueryContext(ctx, "SELECT name FROM events")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		want := fmt.Sprint("from db", i+1)
		if len(names) != 1 || names[0] != want {
			t.Errorf("db%d sees %q, want only %q", i+1, names, want)
		}
	}
}

func TestPostgresCleanupDropsSchemaWithFakeTB(t *testing.T) {
	t.Parallel()
	observer, err := sql.Open("pgx", PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = observer.Close() })

	f := newFakeTB(t, "TestFake/Postgres")
	var schema string
	if !f.run(func(tb testing.TB) { _, schema = Postgres(tb) }) {
		t.Fatalf("Postgres failed: %s", f.fatal)
	}
	if !schemaExists(t, observer, schema) {
		t.Fatalf("schema %s was not created", schema)
	}
	f.runCleanups()
	if len(f.errors) > 0 {
		t.Fatalf("cleanup reported errors: %q", f.errors)
	}
	if schemaExists(t, observer, schema) {
		t.Errorf("schema %s still exists after cleanup", schema)
	}
}

func TestDSNWithSearchPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
			"postgres://postgres@127.0.0.1:5432/test?search_path=t_x&sslmode=disable"},
		{"postgresql://u:p@h/db", "postgresql://u:p@h/db?search_path=t_x"},
		{"postgres://h/db?search_path=old", "postgres://h/db?search_path=t_x"},
		{"host=127.0.0.1 dbname=test ", "host=127.0.0.1 dbname=test search_path=t_x"},
	}
	for _, tt := range tests {
		if got := DSNWithSearchPath(tt.in, "t_x"); got != tt.want {
			t.Errorf("DSNWithSearchPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		max   int
		lower bool
		want  string
	}{
		{"TestA/b c", 48, false, "TestA_b_c"},
		{"TestA/b c", 48, true, "testa_b_c"},
		{"__//**__", 48, false, "test"},
		{"abcdef", 3, false, "abc"},
		{"Tëst", 48, true, "t_st"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.max, tt.lower); got != tt.want {
			t.Errorf("sanitize(%q, %d, %v) = %q, want %q", tt.in, tt.max, tt.lower, got, tt.want)
		}
	}
}
