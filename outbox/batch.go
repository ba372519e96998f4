package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"github.com/cqrs-ddd/watermill-observability/contract"
)

// errBatchRolledBack is the outcome of a batch whose transaction was rolled
// back: the forwarder's position did not move, and its messages will be read
// again.
var errBatchRolledBack = errors.New("outbox: batch transaction rolled back; its messages will be forwarded again")

// batchBeginner hands watermill-sql's subscriber transactions that know
// their batch: one subscriber query is one transaction, which reads up to
// SubscribeBatchSize rows, hands their messages to the forwarder one at a
// time, saves the position and commits.
// It also reports the database becoming unreachable and reachable again,
// once each, since watermill-sql only retries.
type batchBeginner struct {
	wmsql.Beginner
	f *Forwarder
}

func (b batchBeginner) BeginTx(ctx context.Context, opts *sql.TxOptions) (wmsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		if ctx.Err() == nil {
			b.f.dbState(ctx, err)
		}
		return tx, err
	}
	b.f.dbState(ctx, nil)
	return &batchTx{Tx: tx, done: make(chan struct{})}, nil
}

// batchTx is one subscriber transaction, and so one batch.
type batchTx struct {
	wmsql.Tx

	// rows counts the rows read; the subscriber reads them all before it
	// hands out the first message, so the count is final by then.
	rows atomic.Int64

	mu       sync.Mutex
	started  bool
	refusal  error // a hook refused OpProcessBatch: every message fails
	acked    int
	lastErr  error
	result   error
	finished bool
	done     chan struct{}
}

func (t *batchTx) QueryContext(ctx context.Context, query string, args ...any) (wmsql.Rows, error) {
	rows, err := t.Tx.QueryContext(ctx, query, args...)
	if err != nil {
		return rows, err
	}
	return &countingRows{Rows: rows, n: &t.rows}, nil
}

func (t *batchTx) Commit() error {
	err := t.Tx.Commit()
	t.finish(err)
	return err
}

func (t *batchTx) Rollback() error {
	err := t.Tx.Rollback()
	t.finish(errBatchRolledBack)
	return err
}

// finish records how the transaction ended and releases OpProcessBatch.
func (t *batchTx) finish(txErr error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finished {
		return
	}
	t.finished = true
	switch n := int(t.rows.Load()); {
	case txErr != nil:
		t.result = errors.Join(txErr, t.lastErr)
	case t.acked < n:
		msg := fmt.Sprintf("outbox: batch ended after forwarding %d of %d messages; the rest will be read again", t.acked, n)
		if t.lastErr != nil {
			t.result = fmt.Errorf("%s: %w", msg, t.lastErr)
		} else {
			t.result = errors.New(msg)
		}
	}
	close(t.done)
}

// handled records the outcome of one message of the batch.
func (t *batchTx) handled(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.lastErr = err
		return
	}
	t.acked++
}

// begin starts OpProcessBatch for this batch when its first message
// arrives, unless it has started. The operation runs in a goroutine of its
// own from then until the transaction ends, so that its span covers the
// batch. A hook refusing the operation is returned for every message of the
// batch, which the subscriber then retries: a rate limiter on
// outbox.process_batch slows forwarding down.
func (t *batchTx) begin(ctx context.Context, f *Forwarder) error {
	t.mu.Lock()
	if t.started {
		defer t.mu.Unlock()
		return t.refusal
	}
	t.started = true
	t.mu.Unlock()

	reg := f.o.registry(ctx)
	if !reg.Enabled(OpProcessBatch) {
		return nil
	}
	attrs := []slog.Attr{
		slog.Int(AttrBatchSize, int(t.rows.Load())),
		slog.String(AttrOutboxTopic, f.o.cfg.Topic),
	}
	admitted := make(chan struct{})
	var once sync.Once
	refused := make(chan error, 1)
	opCtx := context.WithoutCancel(ctx)
	go func() {
		err := contract.RunHooks(opCtx, reg, OpProcessBatch, attrs, func(context.Context) error {
			once.Do(func() { close(admitted) })
			<-t.done
			t.mu.Lock()
			defer t.mu.Unlock()
			return t.result
		}, f.o.hookPanicked)
		refused <- err
	}()
	select {
	case <-admitted:
		return nil
	case err := <-refused:
		// The pipeline returned without running the batch: a hook refused.
		err = fmt.Errorf("outbox: a hook refused %s: %w", OpProcessBatch, err)
		t.mu.Lock()
		t.refusal = err
		t.mu.Unlock()
		return err
	}
}

// countingRows counts the rows a query returned.
type countingRows struct {
	wmsql.Rows
	n *atomic.Int64
}

func (r *countingRows) Next() bool {
	ok := r.Rows.Next()
	if ok {
		r.n.Add(1)
	}
	return ok
}

// failedSet is a bounded set of envelope UUIDs whose forward failed.
type failedSet struct {
	mu  sync.Mutex
	max int
	ids map[string]struct{}
}

// maxFailedTracked bounds the memory of failedSet; past it, retries of
// further messages still happen but are not reported as OpRetryFailed.
const maxFailedTracked = 10000

func newFailedSet(max int) failedSet {
	return failedSet{max: max, ids: make(map[string]struct{})}
}

func (s *failedSet) add(id string) (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return false
	}
	if len(s.ids) < s.max {
		s.ids[id] = struct{}{}
	}
	return true
}

func (s *failedSet) remove(id string) {
	s.mu.Lock()
	delete(s.ids, id)
	s.mu.Unlock()
}

func (s *failedSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}
