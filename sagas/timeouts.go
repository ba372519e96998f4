package sagas

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// timeoutTraceKeys are the metadata keys a timeout keeps of the context of
// the step that scheduled it. The correlation ID rides along, so that the
// timeout step's commands stay in the saga's conversation.
var timeoutTraceKeys = []string{contract.TraceparentKey, contract.TracestateKey, contract.BaggageKey, contract.CorrelationIDKey}

// nextTimeouts returns the timeouts of next after the step: the fired one
// removed, the cancelled ones removed, the scheduled ones added (replacing
// a scheduled one of the same name), none when the saga ended.
func (m *Manager) nextTimeouts(ctx context.Context, next Instance, tr trigger, out stepOutput, version int64, now time.Time) []Timeout {
	if out.end != "" {
		return nil
	}
	ts := slices.DeleteFunc(next.Timeouts, func(t Timeout) bool {
		return (tr.kind == triggerTimeout && t.ID == tr.eventID) || slices.Contains(out.cancel, t.Name)
	})
	var saved map[string]string
	for i, s := range out.schedule {
		if saved == nil {
			saved = m.traceOf(ctx)
		}
		ts = slices.DeleteFunc(ts, func(t Timeout) bool { return t.Name == s.Name })
		ts = append(ts, Timeout{
			ID:          derivedUUID(next.Type, next.ID, "timeout", version, i),
			Name:        s.Name,
			Due:         now.Add(s.After),
			ScheduledAt: now,
			Trace:       saved,
		})
	}
	if len(ts) == 0 {
		return nil
	}
	return ts
}

// traceOf returns the trace context of ctx (and its correlation ID) as
// metadata, through the same propagation as the commands.
func (m *Manager) traceOf(ctx context.Context) map[string]string {
	msg := message.NewMessage("", nil)
	m.prop.Inject(ctx, msg)
	out := make(map[string]string, len(timeoutTraceKeys))
	for _, k := range timeoutTraceKeys {
		if v := msg.Metadata.Get(k); v != "" {
			out[k] = v
		}
	}
	return out
}

// timeoutContext returns the context a timeout step runs with: the
// saga's correlation ID, the timeout's ID as causation, and the trace of
// the step that scheduled it, continued as parent or, when configured or
// when the timeout is older than TimeoutLinkAfter, linked from a new trace.
func (m *Manager) timeoutContext(ctx context.Context, t Timeout, now time.Time) context.Context {
	if cid := t.Trace[contract.CorrelationIDKey]; cid != "" {
		ctx = hooks.WithCorrelationID(ctx, cid)
	}
	ctx = hooks.WithCausationID(ctx, t.ID)
	if len(t.Trace) == 0 {
		return ctx
	}
	restored := m.prop.ExtractTrace(ctx, message.Metadata(t.Trace))
	link := m.cfg.LinkTimeouts || (m.cfg.TimeoutLinkAfter > 0 && now.Sub(t.ScheduledAt) > m.cfg.TimeoutLinkAfter)
	if !link {
		return restored
	}
	return contract.WithLink(ctx, trace.SpanContextFromContext(restored))
}

// unknownTimeout names a dropped timeout whose instance no longer knows
// it (its name went with it).
const unknownTimeout = "unknown"

// dropTimeout logs, counts and notifies a fired timeout that no step
// handles.
func (m *Manager) dropTimeout(ctx context.Context, typ, id string, tr trigger, reason string) {
	if tr.eventType == "" {
		tr.eventType = unknownTimeout
	}
	m.droppedTimeouts.Add(1)
	m.cfg.Logger.InfoContext(ctx, "sagas: timeout dropped", slog.String("saga.type", typ), slog.String("saga.id", id),
		slog.String("saga.timeout", tr.eventType), slog.String("timeout.id", tr.eventID), slog.String("reason", reason))
	m.notify(ctx, "saga.timeout.dropped", slog.String("saga.type", typ), slog.String("saga.id", id), slog.String("saga.timeout", tr.eventType))
}
