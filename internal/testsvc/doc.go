// Package testsvc connects the project's integration tests to the real Redis
// and PostgreSQL servers they run against, and isolates each test on them.
//
// The servers are found through two environment variables, with defaults that
// match scripts/test-services.sh:
//
//	REDIS_ADDR    host:port of Redis     (default 127.0.0.1:6379)
//	POSTGRES_DSN  PostgreSQL DSN          (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable)
//
// Integration tests never skip: when a server cannot be reached, [Redis] and
// [Postgres] fail the test with a message that names the address and tells how
// to start the servers (make test, make services or scripts/test-services.sh).
//
// Isolation, so that tests can run in parallel and repeatedly on one server:
//
//   - Redis: [Prefix] returns a unique key prefix per call (test name plus a
//     random suffix); [CleanupKeys] deletes every key with that prefix when the
//     test ends, using SCAN and DEL. [RedisPrefix] does all three steps at once.
//   - PostgreSQL: [Postgres] creates a schema of its own for the test, returns a
//     *sql.DB whose connections have it as their search_path, and drops it
//     (CASCADE) when the test ends.
//
// A typical Redis test:
//
//	func TestPublish(t *testing.T) {
//		t.Parallel()
//		client, prefix := testsvc.RedisPrefix(t)
//		topic := prefix + "orders"
//		// ... use client and topic ...
//	}
package testsvc
