package projections

import (
	"context"
	"time"
)

// A Leaser grants partitions to workers for a limited time, so that each
// partition has one owner at a time, and tracks the live workers of a
// projection so that partitions are spread among them. The lease token it
// grants is checked again by the [Store]'s commit (fencing): [RedisStore]
// and [MemoryStore] are both, so give the worker the same value as Store
// and Leaser.
type Leaser interface {
	// Acquire takes the lease of p for ttl if it is free (or already
	// token's), and reports whether it did.
	Acquire(ctx context.Context, p Partition, token string, ttl time.Duration) (bool, error)
	// Renew extends the lease of p held with token, and reports false when
	// it is no longer held.
	Renew(ctx context.Context, p Partition, token string, ttl time.Duration) (bool, error)
	// Release gives up the lease of p if token holds it.
	Release(ctx context.Context, p Partition, token string) error
	// Heartbeat marks member as live for ttl and returns the number of
	// live members of projection, member included.
	Heartbeat(ctx context.Context, projection, member string, ttl time.Duration) (int, error)
}
