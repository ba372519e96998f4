package watermillobs

import (
	"context"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// NewLogHandler returns a [slog.Handler] that adds the observability fields
// of the context to every record logged with one (InfoContext,
// LogAttrs, ...) and passes it to h:
//
//   - trace_id and span_id, when the context has a valid span context;
//   - correlation_id and causation_id, when [hooks.CorrelationID] and
//     [hooks.CausationID] are set;
//   - the fields of [WithFields].
//
// They are added at the top level of the record even under
// [slog.Logger.WithGroup], where log pipelines such as Loki and Grafana look
// for them. To do so, groups and the attributes added inside them are kept by
// the returned handler and rebuilt for each record instead of being handed to
// h's WithGroup and WithAttrs; attributes added before any group still go to
// h.WithAttrs and are formatted once. Records logged without a context, or
// with one that carries none of the fields, are passed on unchanged. A field
// whose key the record already has at the top level, from the logging call or
// from WithAttrs, is not added again: the record's own value wins, so records
// of [Logging] do not get trace_id or correlation_id twice.
//
// Wrapping a handler returned by NewLogHandler returns it unchanged. It
// panics if h is nil, as [slog.New] does.
func NewLogHandler(h slog.Handler) slog.Handler {
	if h == nil {
		panic("watermillobs: NewLogHandler called with a nil handler")
	}
	if lh, ok := h.(*logHandler); ok {
		return lh
	}
	return &logHandler{inner: h}
}

// logHandler is the handler of NewLogHandler. It is immutable: WithAttrs and
// WithGroup return copies, so it is safe for concurrent use.
type logHandler struct {
	inner slog.Handler
	// topKeys are the keys of the attributes given to inner.WithAttrs.
	topKeys []string
	// groups are the groups opened by WithGroup, outermost first, each with
	// the attributes added while it was the innermost group.
	groups []logGroup
}

type logGroup struct {
	name  string
	attrs []slog.Attr
}

// Enabled reports whether the wrapped handler handles records at level.
func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the context's fields to r and passes it to the wrapped handler.
func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	extra := contextLogAttrs(ctx)
	if len(extra) > 0 && (len(h.topKeys) > 0 || (len(h.groups) == 0 && r.NumAttrs() > 0)) {
		extra = slices.DeleteFunc(extra, func(a slog.Attr) bool {
			return slices.Contains(h.topKeys, a.Key) || (len(h.groups) == 0 && recordHasKey(r, a.Key))
		})
	}
	if len(h.groups) == 0 {
		if len(extra) > 0 {
			r = r.Clone()
			r.AddAttrs(extra...)
		}
		return h.inner.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(extra...)
	// Build the groups from the innermost out; the record's attributes go
	// into the innermost one. Empty groups are left out, as slog requires.
	inner := make([]slog.Attr, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		inner = append(inner, a)
		return true
	})
	for i := len(h.groups) - 1; i >= 0; i-- {
		g := h.groups[i]
		attrs := make([]slog.Attr, 0, len(g.attrs)+len(inner))
		attrs = append(attrs, g.attrs...)
		attrs = append(attrs, inner...)
		if len(attrs) == 0 {
			inner = nil
			continue
		}
		inner = []slog.Attr{{Key: g.name, Value: slog.GroupValue(attrs...)}}
	}
	nr.AddAttrs(inner...)
	return h.inner.Handle(ctx, nr)
}

// WithAttrs returns a handler whose records carry attrs, inside the groups
// opened so far.
func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.groups) == 0 {
		keys := slices.Grow(slices.Clip(h.topKeys), len(attrs))
		for _, a := range attrs {
			keys = append(keys, a.Key)
		}
		return &logHandler{inner: h.inner.WithAttrs(attrs), topKeys: keys}
	}
	groups := slices.Clone(h.groups)
	last := &groups[len(groups)-1]
	last.attrs = append(slices.Clip(last.attrs), attrs...)
	return &logHandler{inner: h.inner, topKeys: h.topKeys, groups: groups}
}

// WithGroup returns a handler that puts the attributes added later, and
// those of records, inside the group name. The context's fields stay at the
// top level.
func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	groups := make([]logGroup, len(h.groups), len(h.groups)+1)
	copy(groups, h.groups)
	return &logHandler{inner: h.inner, topKeys: h.topKeys, groups: append(groups, logGroup{name: name})}
}

// recordHasKey reports whether r has a top-level attribute named key.
func recordHasKey(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// contextLogAttrs returns the observability fields of ctx, or nil.
func contextLogAttrs(ctx context.Context) []slog.Attr {
	if ctx == nil {
		return nil
	}
	sc := trace.SpanContextFromContext(ctx)
	corr, cause := hooks.CorrelationID(ctx), hooks.CausationID(ctx)
	fields := Fields(ctx)
	n := len(fields)
	if sc.IsValid() {
		n += 2
	}
	if corr != "" {
		n++
	}
	if cause != "" {
		n++
	}
	if n == 0 {
		return nil
	}
	attrs := make([]slog.Attr, 0, n)
	if sc.IsValid() {
		attrs = append(attrs,
			slog.String("trace_id", sc.TraceID().String()),
			slog.String("span_id", sc.SpanID().String()))
	}
	if corr != "" {
		attrs = append(attrs, slog.String("correlation_id", bound.String(corr, bound.Attribute)))
	}
	if cause != "" {
		attrs = append(attrs, slog.String("causation_id", bound.String(cause, bound.Attribute)))
	}
	return append(attrs, fields...)
}
