package testsvc

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
)

const (
	// DefaultRedisAddr is the Redis address used when REDIS_ADDR is unset or empty.
	DefaultRedisAddr = "127.0.0.1:6379"

	// DefaultPostgresDSN is the PostgreSQL DSN used when POSTGRES_DSN is unset or empty.
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// startHint is appended to every "server unreachable" failure.
const startHint = "Integration tests need the real servers and are never skipped: " +
	"run `make test` (it starts them first), or start them with `make services` " +
	"(bash scripts/test-services.sh), which honours REDIS_ADDR and POSTGRES_DSN."

// RedisAddr returns the Redis address (host:port) the tests use: the
// REDIS_ADDR environment variable, or [DefaultRedisAddr].
func RedisAddr() string {
	if v := strings.TrimSpace(os.Getenv("REDIS_ADDR")); v != "" {
		return v
	}
	return DefaultRedisAddr
}

// PostgresDSN returns the PostgreSQL DSN the tests use: the POSTGRES_DSN
// environment variable, or [DefaultPostgresDSN].
func PostgresDSN() string {
	if v := strings.TrimSpace(os.Getenv("POSTGRES_DSN")); v != "" {
		return v
	}
	return DefaultPostgresDSN
}

// sanitize keeps ASCII letters, digits and '_' of s (lower-casing letters when
// lower is set), maps every other rune to '_', squeezes runs of '_' and cuts
// the result to at most max bytes.
func sanitize(s string, max int, lower bool) string {
	var b strings.Builder
	lastUnderscore := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r >= 'A' && r <= 'Z':
			if lower {
				r += 'a' - 'A'
			}
		default:
			r = '_'
		}
		if r == '_' {
			if lastUnderscore {
				continue
			}
			lastUnderscore = true
		} else {
			lastUnderscore = false
		}
		b.WriteRune(r)
		if b.Len() >= max {
			break
		}
	}
	out := strings.Trim(b.String(), "_")
	if out == "" {
		out = "test"
	}
	return out
}

// randomSuffix returns 12 random lower-case hex digits.
func randomSuffix() string {
	var buf [6]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic("testsvc: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(buf[:])
}
