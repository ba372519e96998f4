package sagas

import (
	"context"
	"crypto/sha1"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/uuidtext"
)

// stamp turns a step's commands into complete messages, as saved and later
// published verbatim: marshaled, with a UUID derived from the step (so a
// re-run of the same step after a crash cannot mint a second command) and
// the metadata contract (correlation ID, causation ID, message kind, trace
// context of the saga.run span in ctx, published_at).
func (m *Manager) stamp(ctx context.Context, typ, id string, version int64, cmds []any) ([]PendingMessage, []CommandRecord, error) {
	if len(cmds) == 0 {
		return nil, nil, nil
	}
	msgs := make([]PendingMessage, 0, len(cmds))
	recs := make([]CommandRecord, 0, len(cmds))
	for i, cmd := range cmds {
		name := m.cfg.Marshaler.Name(cmd)
		msg, err := m.cfg.Marshaler.Marshal(cmd)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: cannot marshal command %d (%s): %w", ErrPoison, i, name, err)
		}
		msg.UUID = derivedUUID(typ, id, "command", version, i)
		// IDs from the context came from metadata: only well-formed ones
		// travel on (Inject mints a correlation ID otherwise).
		if cid := hooks.CorrelationID(ctx); bound.IsID(cid) {
			contract.SetIfAbsent(msg, contract.CorrelationIDKey, cid)
		}
		if cause := hooks.CausationID(ctx); bound.IsID(cause) {
			contract.SetIfAbsent(msg, contract.CausationIDKey, cause)
		}
		contract.SetIfAbsent(msg, contract.MessageKindKey, contract.KindCommand)
		m.prop.Inject(ctx, msg)
		msgs = append(msgs, PendingMessage{
			UUID:     msg.UUID,
			Topic:    m.cfg.GenerateCommandTopic(name),
			Metadata: maps.Clone(map[string]string(msg.Metadata)),
			Payload:  slices.Clone([]byte(msg.Payload)),
		})
		recs = append(recs, CommandRecord{Type: name, UUID: msg.UUID})
	}
	return msgs, recs, nil
}

// publish sends saved messages one by one and marks those sent. A message
// that fails stays pending for recovery; the step is not failed, for it is
// saved.
func (m *Manager) publish(ctx context.Context, typ, id string, msgs []PendingMessage, log *slog.Logger) {
	if len(msgs) == 0 {
		return
	}
	sent := make([]string, 0, len(msgs))
	for _, p := range msgs {
		msg := p.message()
		msg.SetContext(ctx)
		if err := m.cfg.Publisher.Publish(p.Topic, msg); err != nil {
			log.WarnContext(ctx, "sagas: cannot publish a saved command; recovery will publish it",
				slog.String("message.id", p.UUID), slog.String("topic", p.Topic), slog.Any("error", err))
			continue
		}
		sent = append(sent, p.UUID)
	}
	if len(sent) == 0 {
		return
	}
	if err := m.cfg.Store.MarkSent(context.WithoutCancel(ctx), typ, id, sent); err != nil {
		// Recovery will publish them again with the same UUIDs, which
		// consumers deduplicate.
		log.WarnContext(ctx, "sagas: cannot mark commands sent", slog.Any("error", err))
	}
}

// message rebuilds the saved message, verbatim.
func (p PendingMessage) message() *message.Message {
	msg := message.NewMessage(p.UUID, slices.Clone(p.Payload))
	for k, v := range p.Metadata {
		msg.Metadata[k] = v
	}
	return msg
}

// derivedUUID returns a name-based UUID (version 5 layout, SHA-1) of the
// saga type, instance, kind, version and index: the same step always
// yields the same IDs.
func derivedUUID(typ, id, kind string, version int64, index int) string {
	h := sha1.New()
	for _, part := range []string{"watermill-observability/sagas", typ, id, kind, strconv.FormatInt(version, 10), strconv.Itoa(index)} {
		// Length-prefixed, so that no two inputs share an encoding.
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	return uuidtext.Format(u, 5)
}
