package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// ErrUndecodable is wrapped by the error recorded for an envelope that
// cannot be decoded; such a row is moved to the dead-letter table.
var ErrUndecodable = errors.New("outbox: envelope cannot be decoded")

// metadataErrorKey marks, in a row's message, metadata that was not a JSON
// object of strings. watermill-sql would fail the whole read on such a row,
// again and again; tolerantSchema hands it on so that it is dead-lettered.
const metadataErrorKey = "_outbox_metadata_error"

// tolerantSchema is watermill-sql's PostgreSQL schema whose row decoding
// does not fail on malformed metadata.
type tolerantSchema struct{ wmsql.DefaultPostgreSQLSchema }

func (s tolerantSchema) UnmarshalMessage(params wmsql.UnmarshalMessageParams) (wmsql.Row, error) {
	var (
		r    wmsql.Row
		txID wmsql.XID8
	)
	if err := params.Row.Scan(&r.Offset, &txID, &r.UUID, &r.Payload, &r.Metadata); err != nil {
		return wmsql.Row{}, fmt.Errorf("could not scan message row: %w", err)
	}
	msg := message.NewMessage(string(r.UUID), r.Payload)
	if r.Metadata != nil {
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			msg.Metadata = message.Metadata{metadataErrorKey: bound.String(err.Error(), bound.Error)}
		}
	}
	r.Msg = msg
	r.ExtraData = map[string]any{"transaction_id": txID}
	return r, nil
}

// envelope is the JSON of Watermill's forwarder envelope.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// checkEnvelope reports why msg is not an envelope the forwarder can
// unwrap, or nil.
func checkEnvelope(msg *message.Message) error {
	if e, ok := msg.Metadata[metadataErrorKey]; ok {
		return fmt.Errorf("%w: metadata column: %s", ErrUndecodable, e)
	}
	var env envelope
	if err := json.Unmarshal(msg.Payload, &env); err != nil {
		return fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if env.DestinationTopic == "" {
		return fmt.Errorf("%w: no destination_topic", ErrUndecodable)
	}
	return nil
}

// savedAtKey carries, from the envelope to the unwrapped message's context,
// the time the envelope was saved.
type savedAtKey struct{}

// middleware wraps the forwarder's handler: it ties each message to its
// batch (OpProcessBatch), moves undecodable envelopes to the dead-letter
// table, and runs a new attempt after a failure as OpRetryFailed.
func (f *Forwarder) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		tx, _ := wmsql.TxFromContext(ctx)
		batch, _ := tx.(*batchTx)
		if batch != nil {
			if err := batch.begin(ctx, f); err != nil {
				return nil, err
			}
		}
		err := f.handle(ctx, tx, msg, h)
		if batch != nil {
			batch.handled(err)
		}
		return nil, err
	}
}

func (f *Forwarder) handle(ctx context.Context, tx wmsql.Tx, msg *message.Message, h message.HandlerFunc) error {
	if bad := checkEnvelope(msg); bad != nil {
		return f.deadLetter(ctx, tx, msg, bad)
	}
	if at, ok := contract.PublishedAt(msg); ok {
		msg.SetContext(context.WithValue(ctx, savedAtKey{}, at))
	}
	forward := func(context.Context) error {
		_, err := h(msg)
		return err
	}
	var err error
	if reg := f.o.registry(ctx); f.failed.has(msg.UUID) && reg.Enabled(OpRetryFailed) {
		err = contract.RunHooks(ctx, reg, OpRetryFailed, []slog.Attr{
			slog.Int(AttrRetryBatchSize, 1),
			slog.String("message.id", bound.String(msg.UUID, bound.Attribute)),
			slog.String(AttrOutboxTopic, f.o.cfg.Topic),
		}, forward, f.o.hookPanicked)
	} else {
		err = forward(ctx)
	}
	if err != nil {
		if f.failed.add(msg.UUID) {
			f.o.cfg.Logger.WarnContext(ctx, "outbox: cannot forward message; it will be retried",
				slog.String(AttrOutboxTopic, f.o.cfg.Topic), slog.String("message.id", msg.UUID), slog.Any("error", err))
		}
		return err
	}
	f.failed.remove(msg.UUID)
	return nil
}

// deadLetter moves an envelope that cannot be decoded into the dead-letter
// table, in the batch's transaction: the row is kept (for a human to look
// at) and acknowledged only if the insert commits with the forwarder's new
// position. If the insert fails, the message is not acknowledged.
func (f *Forwarder) deadLetter(ctx context.Context, tx wmsql.Tx, msg *message.Message, bad error) error {
	f.o.cfg.Logger.ErrorContext(ctx, "outbox: envelope cannot be decoded; moving it to the dead-letter table",
		slog.String(AttrOutboxTopic, f.o.cfg.Topic), slog.String("message.id", msg.UUID),
		slog.String("table", f.o.tables.deadLetter), slog.Any("error", bad))
	if tx == nil {
		return fmt.Errorf("outbox: cannot dead-letter message %s without the subscriber's transaction: %w", msg.UUID, bad)
	}
	insert := func(ctx context.Context) error {
		md, err := json.Marshal(msg.Metadata)
		if err != nil {
			md = nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO `+f.o.tables.deadLetter+
			` ("uuid", "payload", "metadata", "error") VALUES ($1, $2, $3, $4) ON CONFLICT ("uuid") DO NOTHING`,
			msg.UUID, []byte(msg.Payload), nullJSON(md), bad.Error())
		if err != nil {
			return fmt.Errorf("outbox: cannot dead-letter message %s: %w", msg.UUID, err)
		}
		return nil
	}
	reg := f.o.registry(ctx)
	if !reg.Enabled(OpDeadLetter) {
		return insert(ctx)
	}
	return contract.RunHooks(ctx, reg, OpDeadLetter, []slog.Attr{
		slog.String("message.id", bound.String(msg.UUID, bound.Attribute)),
		slog.String(AttrOutboxTopic, f.o.cfg.Topic),
		slog.String("error", bound.String(bad.Error(), bound.Error)),
	}, insert, f.o.hookPanicked)
}

func nullJSON(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// forwardPublisher is the forwarder's output: it runs OpForwardPrefix+topic
// around the publish of each unwrapped message, with the context saved in
// the message as parent or link, and gives the message a context carrying
// its correlation, so that a decorated publisher downstream sends it in
// that conversation.
type forwardPublisher struct {
	f   *Forwarder
	pub message.Publisher
}

func (p *forwardPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if err := p.forward(topic, m); err != nil {
			return err
		}
	}
	return nil
}

func (p *forwardPublisher) forward(topic string, msg *message.Message) error {
	base := msg.Context()
	ctx := p.f.forwardContext(base, msg)
	reg := p.f.o.registry(base)
	if !reg.EnabledPrefix(OpForwardPrefix) {
		msg.SetContext(contract.WithoutLink(ctx))
		return p.pub.Publish(topic, msg)
	}
	dest, _ := contract.Destination(nil, topic, msg)
	name := OpForwardPrefix + dest
	if !reg.Enabled(name) {
		msg.SetContext(contract.WithoutLink(ctx))
		return p.pub.Publish(topic, msg)
	}
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs,
		slog.String(AttrTopic, bound.String(topic, bound.Attribute)),
		slog.String("message.id", bound.String(msg.UUID, bound.Attribute)),
		slog.String(hooks.MessageTypeKey, contract.MessageType(msg)))
	if cid := msg.Metadata.Get(contract.CorrelationIDKey); bound.IsID(cid) {
		attrs = append(attrs, slog.String(contract.CorrelationIDKey, cid))
	}
	if d, ok := timeInOutbox(base, msg); ok {
		attrs = append(attrs, slog.Duration(AttrTimeInOutbox, d))
	}
	return contract.RunHooks(ctx, reg, name, attrs, func(ctx context.Context) error {
		msg.SetContext(ctx)
		return p.pub.Publish(topic, msg)
	}, p.f.o.hookPanicked)
}

func (p *forwardPublisher) Close() error { return p.pub.Close() }

// forwardContext is the context a forward runs in: base with the saved
// baggage and correlation ID, and the saved span context as parent or, in
// ForwardLinked mode, as link. The causation ID is left alone: the forwarded
// message is not handled, it is carried.
func (f *Forwarder) forwardContext(base context.Context, msg *message.Message) context.Context {
	ctx := f.o.prop.ExtractTrace(base, msg.Metadata)
	if cid := msg.Metadata.Get(contract.CorrelationIDKey); bound.IsID(cid) && hooks.CorrelationID(ctx) == "" {
		ctx = hooks.WithCorrelationID(ctx, cid)
	}
	if f.cfg.Trace == ForwardLinked {
		saved := trace.SpanContextFromContext(ctx)
		// Parentless (the link mark makes the span a new root) and linked.
		ctx = contract.WithLink(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), saved)
	}
	return ctx
}

// timeInOutbox is the time since the message was saved: the envelope's save
// time, else its published_at. Negative values (clock skew between
// processes) are reported as unknown.
func timeInOutbox(ctx context.Context, msg *message.Message) (time.Duration, bool) {
	at, ok := ctx.Value(savedAtKey{}).(time.Time)
	if !ok {
		at, ok = contract.PublishedAt(msg)
	}
	if !ok {
		return 0, false
	}
	d := time.Since(at)
	if d < 0 {
		return 0, false
	}
	return d, true
}
