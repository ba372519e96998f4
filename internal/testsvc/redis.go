package testsvc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisPingTimeout bounds the connection check done by [Redis].
const redisPingTimeout = 5 * time.Second

// cleanupTimeout bounds the work of a cleanup registered by this package.
const cleanupTimeout = 30 * time.Second

// Redis returns a client for the Redis server at [RedisAddr], checked with a
// PING. It fails the test (t.Fatalf, never a skip) when the server does not
// answer, naming the address and how to start the test services. The client
// is closed when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	addr := RedisAddr()
	client := redis.NewClient(&redis.Options{
		Addr:        addr,
		DialTimeout: redisPingTimeout,
	})
	ctx, cancel := context.WithTimeout(context.Background(), redisPingTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		t.Fatalf("testsvc: Redis at %s (REDIS_ADDR) is not reachable: %v\n%s", addr, err, startHint)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// Prefix returns a key prefix unique to this call, for naming the Redis keys
// and streams a test uses, such as "wobs:TestPublish_retries:1f2e3d4c5b6a:".
// It is made of the sanitized test name (letters, digits and '_' only) and a
// random suffix, so tests can run in parallel and repeatedly on one server.
// It contains no glob metacharacters. Pair it with [CleanupKeys], or use
// [RedisPrefix].
func Prefix(t testing.TB) string {
	t.Helper()
	return "wobs:" + sanitize(t.Name(), 48, false) + ":" + randomSuffix() + ":"
}

// RedisPrefix is [Redis], [Prefix] and [CleanupKeys] in one call: it returns a
// checked client and a fresh prefix whose keys are deleted when the test ends.
func RedisPrefix(t testing.TB) (*redis.Client, string) {
	t.Helper()
	client := Redis(t)
	prefix := Prefix(t)
	CleanupKeys(t, client, prefix)
	return client, prefix
}

// CleanupKeys registers a t.Cleanup that deletes every key starting with
// prefix (see [DeleteKeys]); a failure to delete is reported with t.Errorf.
// Cleanups run last-registered first, so register it after creating client
// (as [RedisPrefix] does) for client to be still open when it runs.
func CleanupKeys(t testing.TB, client redis.Cmdable, prefix string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := DeleteKeys(ctx, client, prefix); err != nil {
			t.Errorf("testsvc: deleting Redis keys with prefix %q: %v", prefix, err)
		}
	})
}

// DeleteKeys deletes every key that starts with prefix, walking the keyspace
// with SCAN (never KEYS, which blocks the server) and deleting each batch with
// DEL. prefix is matched literally: glob metacharacters in it are escaped. An
// empty prefix is refused, as it would match every key. It returns how many
// keys were deleted.
func DeleteKeys(ctx context.Context, client redis.Cmdable, prefix string) (int64, error) {
	if prefix == "" {
		return 0, errEmptyPrefix
	}
	pattern := escapeGlob(prefix) + "*"
	var (
		cursor  uint64
		deleted int64
	)
	for {
		keys, next, err := client.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return deleted, err
		}
		if len(keys) > 0 {
			n, err := client.Del(ctx, keys...).Result()
			if err != nil {
				return deleted, err
			}
			deleted += n
		}
		if next == 0 {
			return deleted, nil
		}
		cursor = next
	}
}

type constError string

func (e constError) Error() string { return string(e) }

// errEmptyPrefix is returned by DeleteKeys for an empty prefix.
const errEmptyPrefix = constError("testsvc: refusing to delete keys with an empty prefix")

// escapeGlob escapes the characters that Redis' glob-style MATCH patterns
// treat specially, so that s matches only itself.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
