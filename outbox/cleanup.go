package outbox

import (
	"context"
	"fmt"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// cleanupChunk bounds the rows one DELETE removes, so that a large first
// cleanup does not hold locks or bloat WAL in one statement.
const cleanupChunk = 1000

// cleanupSQL deletes up to cleanupChunk rows that the consumer group has
// acknowledged (at or before its saved position) and that were saved before
// now minus $2 seconds. Without an offsets row nothing is acknowledged, so
// nothing is deleted.
func (o *Outbox) cleanupSQL() string {
	return `DELETE FROM ` + o.tables.messages + ` WHERE ctid IN (
	SELECT m.ctid FROM ` + o.tables.messages + ` m, ` + o.tables.offsets + ` pos
	WHERE pos.consumer_group = $1
	AND (m.transaction_id < pos.last_processed_transaction_id
		OR (m.transaction_id = pos.last_processed_transaction_id AND m."offset" <= COALESCE(pos.offset_acked, 0)))
	AND ` + savedAtSQL + ` < now() - make_interval(secs => $2)
	LIMIT ` + fmt.Sprint(cleanupChunk) + `
)`
}

// Cleanup deletes the rows the forwarder has forwarded and acknowledged that
// were saved more than olderThan ago, and returns how many it deleted.
// Rows not yet forwarded are never deleted, whatever their age. A running
// [Forwarder] calls it every CleanupInterval with its Retention; call it
// yourself (from a cron job) when Retention is negative.
//
// This package keeps forwarded rows for a while rather than using
// watermill-sql's queue schema with delete-on-ack: the rows stay available
// to answer "was this event forwarded, and when?", acknowledging stays one
// UPDATE per batch, and deletion happens in bounded chunks off the
// forwarding path.
func (o *Outbox) Cleanup(ctx context.Context, db wmsql.ContextExecutor, olderThan time.Duration) (int64, error) {
	var total int64
	for {
		res, err := db.ExecContext(ctx, o.cleanupSQL(), o.cfg.ConsumerGroup, olderThan.Seconds())
		if err != nil {
			return total, fmt.Errorf("outbox: cannot delete forwarded rows: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("outbox: cannot delete forwarded rows: %w", err)
		}
		total += n
		if n < cleanupChunk {
			return total, nil
		}
	}
}
