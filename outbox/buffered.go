package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// ErrQueueFull is returned by [BufferedPublisher.Publish] when its queue
// holds QueueSize calls already: the database does not keep up, and the
// caller should shed load or retry later rather than pile up goroutines.
var ErrQueueFull = errors.New("outbox: buffered publisher queue is full")

// ErrPublisherClosed is returned by [BufferedPublisher.Publish] after Close.
var ErrPublisherClosed = errors.New("outbox: buffered publisher is closed")

// Defaults of [BufferedConfig].
const (
	DefaultQueueSize     = 1024
	DefaultMaxBatch      = 100
	DefaultCommitTimeout = 30 * time.Second
)

// BufferedConfig configures a [BufferedPublisher].
type BufferedConfig struct {
	// DB is where the outbox lives (see ForwarderConfig.DB). It is
	// required.
	DB wmsql.Beginner
	// QueueSize is the number of Publish calls that may wait for a
	// transaction; one more fails with [ErrQueueFull]. If not set,
	// [DefaultQueueSize] is used.
	QueueSize int
	// MaxBatch is the largest number of Publish calls committed in one
	// transaction. If not set, [DefaultMaxBatch] is used.
	MaxBatch int
	// CommitTimeout bounds one group transaction. If not set,
	// [DefaultCommitTimeout] is used.
	CommitTimeout time.Duration
}

func (c *BufferedConfig) setDefaults() {
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
}

// Validate reports every problem of c, joined.
func (c BufferedConfig) Validate() (err error) {
	if c.DB == nil {
		err = errors.Join(err, errors.New("missing DB"))
	}
	if c.QueueSize < 0 || c.MaxBatch < 0 || c.CommitTimeout < 0 {
		err = errors.Join(err, errors.New("negative QueueSize, MaxBatch or CommitTimeout"))
	}
	return err
}

// BufferedPublisher saves messages into the outbox for code that has no
// transaction of its own: concurrent Publish calls are grouped into one
// transaction (a group commit: while one transaction commits, the calls
// that arrive meanwhile queue up for the next), and each Publish returns
// only after the transaction holding its messages committed, with that
// transaction's error. Messages are stamped and saved as by
// [Outbox.TxPublisher]. It is safe for concurrent use.
//
// A Publish call whose messages cannot be inserted (a hook refusing
// outbox.save_events, say) fails alone: the group is rolled back and
// committed again without it. A failed BEGIN or COMMIT fails every call of
// the group.
type BufferedPublisher struct {
	o   *Outbox
	cfg BufferedConfig

	mu     sync.RWMutex
	closed bool
	queue  chan *bufferedCall
	wg     sync.WaitGroup
}

type bufferedCall struct {
	topic string
	msgs  []*message.Message
	done  chan error
}

// NewBufferedPublisher starts a BufferedPublisher configured by cfg.
// Close it to drain its queue.
func (o *Outbox) NewBufferedPublisher(cfg BufferedConfig) (*BufferedPublisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid buffered publisher config: %w", err)
	}
	p := &BufferedPublisher{o: o, cfg: cfg, queue: make(chan *bufferedCall, cfg.QueueSize)}
	p.wg.Go(p.run)
	return p, nil
}

// Publish saves msgs for topic in the next group transaction and returns
// once it committed. It runs as hook operation [OpBufferedPublish]; the
// messages' contexts become the operation's, so that outbox.save_events
// and the saved trace context continue it.
func (p *BufferedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := checkPublish(topic, msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx := msgs[0].Context()
	reg := p.o.registry(ctx)
	if !reg.Enabled(OpBufferedPublish) {
		return p.enqueue(topic, msgs)
	}
	return contract.RunHooks(ctx, reg, OpBufferedPublish, []slog.Attr{
		slog.String(AttrTopic, bound.String(topic, bound.Attribute)),
		slog.Int(AttrEventCount, len(msgs)),
	}, func(ctx context.Context) error {
		for _, m := range msgs {
			m.SetContext(ctx)
		}
		return p.enqueue(topic, msgs)
	}, p.o.hookPanicked)
}

func (p *BufferedPublisher) enqueue(topic string, msgs []*message.Message) error {
	call := &bufferedCall{topic: topic, msgs: msgs, done: make(chan error, 1)}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return ErrPublisherClosed
	}
	select {
	case p.queue <- call:
	default:
		p.mu.RUnlock()
		return fmt.Errorf("%w (%d calls waiting)", ErrQueueFull, p.cfg.QueueSize)
	}
	p.mu.RUnlock()
	return <-call.done
}

// Close stops accepting calls, commits every call already queued, and
// returns when the last has committed. It is safe to call more than once.
func (p *BufferedPublisher) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// run takes what is queued, up to MaxBatch calls, and commits it as one
// transaction, until the queue is closed and empty.
func (p *BufferedPublisher) run() {
	for call := range p.queue {
		group := []*bufferedCall{call}
	gather:
		for len(group) < p.cfg.MaxBatch {
			select {
			case c, ok := <-p.queue:
				if !ok {
					break gather
				}
				group = append(group, c)
			default:
				break gather
			}
		}
		p.commit(group)
	}
}

// commit saves the group in one transaction and answers every call. A call
// whose save fails is answered with its error and left out of a new
// attempt with the rest.
func (p *BufferedPublisher) commit(group []*bufferedCall) {
	for len(group) > 0 {
		failed, err := p.try(group)
		if failed < 0 {
			for _, c := range group {
				c.done <- err
			}
			return
		}
		group[failed].done <- err
		group = append(group[:failed:failed], group[failed+1:]...)
	}
}

// try runs one transaction over group. It returns (-1, err) when the whole
// group is answered with err (nil: committed), or the index of a call whose
// save failed, with its error, the transaction rolled back.
func (p *BufferedPublisher) try(group []*bufferedCall) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CommitTimeout)
	defer cancel()
	tx, err := p.cfg.DB.BeginTx(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("outbox: buffered publisher cannot begin transaction: %w", err)
	}
	for i, c := range group {
		if err := p.o.save(tx, c.topic, c.msgs); err != nil {
			_ = tx.Rollback()
			if ctx.Err() != nil {
				return -1, fmt.Errorf("outbox: buffered publisher transaction timed out after %s: %w", p.cfg.CommitTimeout, err)
			}
			return i, err
		}
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("outbox: buffered publisher cannot commit: %w", err)
	}
	return -1, nil
}
