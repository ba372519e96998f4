package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// Operation names and attribute keys of the outbox, the contract that
// metrics hooks (promobs) and audit hooks read.
const (
	// OpSaveEvents wraps one Publish call of a transactional publisher:
	// the messages are stamped and inserted in the caller's transaction.
	// Attributes: AttrTopic, AttrEventCount; for a single message also
	// "message.id" and "message_type".
	OpSaveEvents = "outbox.save_events"
	// OpProcessBatch wraps the forwarding of one batch: the rows the
	// forwarder read in one SQL transaction, from the first message handed
	// to Watermill's forwarder until the transaction that saves the
	// forwarder's position ends. Attributes: AttrBatchSize, AttrOutboxTopic.
	OpProcessBatch = "outbox.process_batch"
	// OpRetryFailed wraps a new attempt at a message whose forward failed
	// before. Attributes: AttrRetryBatchSize (1: the forwarder handles one
	// message at a time), "message.id", AttrOutboxTopic.
	OpRetryFailed = "outbox.retry_failed"
	// OpForwardPrefix, followed by the destination topic, wraps the
	// publish of one saved message to the broker. Attributes: AttrTopic,
	// AttrTimeInOutbox (when the saved time is known), "message.id",
	// "correlation_id", "message_type".
	OpForwardPrefix = "outbox.forward."
	// OpDeadLetter wraps moving an envelope that cannot be decoded into
	// the dead-letter table. Attributes: "message.id", AttrOutboxTopic,
	// "error".
	OpDeadLetter = "outbox.dead_letter"
	// OpBufferedPublish wraps one Publish call of a [BufferedPublisher],
	// from enqueueing until its group commit ended. Attributes: AttrTopic,
	// AttrEventCount.
	OpBufferedPublish = "outbox.buffered.publish"

	// AttrTopic is the destination topic of the messages.
	AttrTopic = "topic"
	// AttrOutboxTopic is the outbox topic (which names the tables).
	AttrOutboxTopic = "outbox.topic"
	// AttrEventCount is the number of messages saved (int).
	AttrEventCount = "outbox.event_count"
	// AttrBatchSize is the number of rows read in one batch (int).
	AttrBatchSize = "outbox.batch_size"
	// AttrRetryBatchSize is the number of messages retried (int).
	AttrRetryBatchSize = "outbox.retry.batch_size"
	// AttrTimeInOutbox is the time from saving to forwarding
	// (time.Duration); spans show it as outbox.time_in_outbox_ms.
	AttrTimeInOutbox = "outbox.time_in_outbox"
)

// ErrNoTopic is returned by a publisher of this package for an empty
// destination topic: the forwarder could not route the message.
var ErrNoTopic = errors.New("outbox: empty destination topic")

// ErrNilMessage is returned by a publisher of this package for a nil message.
var ErrNilMessage = errors.New("outbox: nil message")

// TxPublisher returns a message.Publisher that saves messages into the
// outbox inside tx, a transaction of database/sql (pgx's stdlib driver or
// any PostgreSQL driver), so that they are forwarded if and only if tx
// commits. Use one per transaction; it is cheap to create. Close does
// nothing to tx.
//
// Each Publish call is one hook operation [OpSaveEvents]: the messages
// get the metadata contract from the first message's context (correlation
// and causation IDs, the trace context of the operation's span and
// baggage, published_at: see contract.Propagation.Inject), without
// overwriting values they have, then are wrapped in Watermill forwarder
// envelopes and inserted with one INSERT through watermill-sql. The saved
// context is what the consumer of the forwarded message continues: the
// forwarder never replaces it.
func (o *Outbox) TxPublisher(tx *sql.Tx) message.Publisher {
	return o.txPublisher(wmsql.TxFromStdSQL(tx))
}

// PgxTxPublisher is [Outbox.TxPublisher] for a transaction of pgx's native
// interface (pgx.Tx of a pgx.Conn or pgxpool.Pool).
func (o *Outbox) PgxTxPublisher(tx pgx.Tx) message.Publisher {
	return o.txPublisher(wmsql.TxFromPgx(tx))
}

func (o *Outbox) txPublisher(exec wmsql.ContextExecutor) message.Publisher {
	return &savePublisher{o: o, exec: exec}
}

// savePublisher stamps messages and inserts them, enveloped, through
// watermill-sql's publisher on one executor (a transaction).
type savePublisher struct {
	o    *Outbox
	exec wmsql.ContextExecutor
}

// Publish saves msgs for topic in the transaction.
func (p *savePublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := checkPublish(topic, msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	return p.o.save(p.exec, topic, msgs)
}

// Close does nothing: the transaction belongs to the caller.
func (p *savePublisher) Close() error { return nil }

func checkPublish(topic string, msgs []*message.Message) error {
	if topic == "" {
		return ErrNoTopic
	}
	for _, m := range msgs {
		if m == nil {
			return ErrNilMessage
		}
	}
	return nil
}

// save runs OpSaveEvents around stamping and inserting msgs on exec.
func (o *Outbox) save(exec wmsql.ContextExecutor, topic string, msgs []*message.Message) error {
	ctx := msgs[0].Context()
	reg := o.registry(ctx)
	fn := func(ctx context.Context) error { return o.insert(ctx, exec, topic, msgs) }
	var err error
	if !reg.Enabled(OpSaveEvents) {
		err = fn(ctx)
	} else {
		err = contract.RunHooks(ctx, reg, OpSaveEvents, saveAttrs(topic, msgs), fn, o.hookPanicked)
	}
	if err != nil {
		return fmt.Errorf("outbox: cannot save %d message(s) for topic %q: %w", len(msgs), topic, err)
	}
	return nil
}

func saveAttrs(topic string, msgs []*message.Message) []slog.Attr {
	attrs := make([]slog.Attr, 0, 4)
	attrs = append(attrs,
		slog.String(AttrTopic, bound.String(topic, bound.Attribute)),
		slog.Int(AttrEventCount, len(msgs)))
	if len(msgs) == 1 {
		attrs = append(attrs,
			slog.String("message.id", bound.String(msgs[0].UUID, bound.Attribute)),
			slog.String("message_type", contract.MessageType(msgs[0])))
	}
	return attrs
}

// insert stamps msgs from ctx (the operation's: its span is the saved trace
// context) and inserts them as envelopes. It never changes the messages'
// contexts beyond what Inject does, so a caller may publish them again.
func (o *Outbox) insert(ctx context.Context, exec wmsql.ContextExecutor, topic string, msgs []*message.Message) error {
	savedAt := formatTime(time.Now())
	for _, m := range msgs {
		o.prop.Inject(ctx, m)
	}
	sqlPub, err := wmsql.NewPublisher(exec, wmsql.PublisherConfig{SchemaAdapter: o.schema}, nil)
	if err != nil { // not expected: the config is fixed
		return err
	}
	env := &envelopeStamper{pub: sqlPub, inner: msgs, savedAt: savedAt}
	return forwarder.NewPublisher(env, forwarder.PublisherConfig{ForwarderTopic: o.cfg.Topic}).Publish(topic, msgs...)
}

// envelopeStamper sits between Watermill's forwarder publisher and
// watermill-sql's: the envelopes it receives have fresh UUIDs and empty
// metadata, and it gives them the save time and the correlation ID of the
// message each wraps, so that the backlog query can read the age of a row
// without decoding its payload, and a DBA can find a conversation's rows.
type envelopeStamper struct {
	pub     message.Publisher
	inner   []*message.Message
	savedAt string
}

func (e *envelopeStamper) Publish(topic string, envs ...*message.Message) error {
	for i, env := range envs {
		if env.Metadata == nil {
			env.Metadata = make(message.Metadata, 2)
		}
		env.Metadata.Set(contract.PublishedAtKey, e.savedAt)
		if i < len(e.inner) {
			if cid := e.inner[i].Metadata.Get(contract.CorrelationIDKey); cid != "" {
				env.Metadata.Set(contract.CorrelationIDKey, cid)
			}
		}
	}
	return e.pub.Publish(topic, envs...)
}

func (e *envelopeStamper) Close() error { return nil }

// formatTime writes t as published_at values are written.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
