package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// Backlog is what the outbox holds that is not forwarded yet.
type Backlog struct {
	// Messages is the number of committed messages past the forwarder's
	// saved position. The position moves once per batch, so messages of
	// the batch being forwarded are still counted.
	Messages int64
	// HeldBack is the number of those that the forwarder cannot read yet:
	// watermill-sql reads only rows of transactions older than every
	// transaction still open (pg_snapshot_xmin), so one long-open
	// transaction anywhere in the database holds back every message
	// committed after it started. A HeldBack that stays above zero points at
	// such a transaction (see pg_stat_activity), not at the forwarder.
	HeldBack int64
	// Oldest is when the oldest of Messages was saved (its envelope's
	// published_at, written by this package's publishers), or the zero
	// time when Messages is 0.
	Oldest time.Time
}

// Age returns how long the oldest unforwarded message has waited at now, or
// 0 when there is none (or clocks disagree).
func (b Backlog) Age(now time.Time) time.Duration {
	if b.Oldest.IsZero() || now.Before(b.Oldest) {
		return 0
	}
	return now.Sub(b.Oldest)
}

// savedAtSQL is the save time of a row: the published_at metadata of its
// envelope when it is well-formed (so a malformed value written by someone
// else cannot fail the query), else created_at. created_at is a TIMESTAMP
// without time zone holding the inserting transaction's start in that
// session's TimeZone; it is read back in this session's TimeZone, which is
// right only when both agree (the server default, unless set per role or
// connection).
const savedAtSQL = `CASE WHEN m.metadata->>'published_at' ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$'
		THEN (m.metadata->>'published_at')::timestamptz
		ELSE m.created_at AT TIME ZONE current_setting('TimeZone') END`

// backlogSQL counts the rows past the consumer group's position with one
// index range scan. Before the forwarder's first Subscribe there is no
// offsets row: the position is then the start. Unlike watermill-sql's read,
// it does not stop at pg_snapshot_xmin; the rows at or above it are counted
// apart as held back.
func (o *Outbox) backlogSQL() string {
	return `WITH pos AS (
	SELECT
		COALESCE((SELECT last_processed_transaction_id FROM ` + o.tables.offsets + ` WHERE consumer_group = $1), '0'::xid8) AS tx,
		COALESCE((SELECT offset_acked FROM ` + o.tables.offsets + ` WHERE consumer_group = $1), 0) AS off
)
SELECT
	count(*),
	count(*) FILTER (WHERE m.transaction_id >= pg_snapshot_xmin(pg_current_snapshot())),
	min(` + savedAtSQL + `)
FROM ` + o.tables.messages + ` m, pos
WHERE (m.transaction_id = pos.tx AND m."offset" > pos.off) OR m.transaction_id > pos.tx`
}

// Backlog returns what the outbox holds that is not forwarded yet, with one
// query on db (see [Backlog] for what each number means). It fails if the
// tables do not exist.
func (o *Outbox) Backlog(ctx context.Context, db wmsql.ContextExecutor) (Backlog, error) {
	rows, err := db.QueryContext(ctx, o.backlogSQL(), o.cfg.ConsumerGroup)
	if err != nil {
		return Backlog{}, fmt.Errorf("outbox: cannot query backlog: %w", err)
	}
	defer func() { _ = rows.Close() }()
	if !rows.Next() {
		if e, ok := rows.(interface{ Err() error }); ok && e.Err() != nil {
			return Backlog{}, fmt.Errorf("outbox: cannot query backlog: %w", e.Err())
		}
		return Backlog{}, errors.New("outbox: cannot query backlog: no result row")
	}
	var (
		b      Backlog
		oldest sql.NullTime
	)
	if err := rows.Scan(&b.Messages, &b.HeldBack, &oldest); err != nil {
		return Backlog{}, fmt.Errorf("outbox: cannot read backlog: %w", err)
	}
	if oldest.Valid {
		b.Oldest = oldest.Time
	}
	return b, nil
}

// ErrBacklogTooOld is wrapped by [Monitor.Ready] when the oldest
// unforwarded message has waited longer than the threshold.
var ErrBacklogTooOld = errors.New("outbox: oldest unforwarded message is too old")

// Monitor watches one outbox on one database: the backlog, as numbers, as
// the source of promobs' outbox gauges (promobs.OutboxBacklogSource), and
// as a readiness check.
type Monitor struct {
	o      *Outbox
	db     wmsql.ContextExecutor
	maxAge time.Duration
	now    func() time.Time
}

// NewMonitor returns a Monitor of the outbox on db whose readiness check
// fails when the oldest unforwarded message is older than maxAge (0: the
// check only needs the query to succeed).
func (o *Outbox) NewMonitor(db wmsql.ContextExecutor, maxAge time.Duration) *Monitor {
	return &Monitor{o: o, db: db, maxAge: maxAge, now: time.Now}
}

// Backlog is [Outbox.Backlog] on the monitor's database.
func (m *Monitor) Backlog(ctx context.Context) (Backlog, error) { return m.o.Backlog(ctx, m.db) }

// OutboxTopic returns the outbox topic, the "outbox" label of the gauges.
func (m *Monitor) OutboxTopic() string { return m.o.cfg.Topic }

// OutboxBacklog returns the backlog in plain Go types: the unforwarded
// messages, those held back by an open transaction, and the save time of
// the oldest (zero when there is none). It is the method promobs'
// OutboxBacklogSource asks for, so that promobs need not import this
// package.
func (m *Monitor) OutboxBacklog(ctx context.Context) (messages, heldBack int64, oldest time.Time, err error) {
	b, err := m.Backlog(ctx)
	return b.Messages, b.HeldBack, b.Oldest, err
}

// Ready returns nil when the backlog can be read and its oldest message is
// not older than the monitor's threshold, else an error saying why (wrapping
// [ErrBacklogTooOld] for an old backlog). Use it in a readiness probe: a
// forwarder that cannot keep up, a broker down or a transaction held open
// make the service not ready until the outbox drains.
func (m *Monitor) Ready(ctx context.Context) error {
	b, err := m.Backlog(ctx)
	if err != nil {
		return err
	}
	if age := b.Age(m.now()); m.maxAge > 0 && age > m.maxAge {
		return fmt.Errorf("%w: %d message(s) waiting, the oldest for %s (threshold %s), %d held back by an open transaction",
			ErrBacklogTooOld, b.Messages, age.Round(time.Millisecond), m.maxAge, b.HeldBack)
	}
	return nil
}
