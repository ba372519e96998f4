package watermillobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"

	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func TestNewLogHandler_slogtest(t *testing.T) {
	var buf bytes.Buffer
	h := watermillobs.NewLogHandler(slog.NewJSONHandler(&buf, nil))
	results := func() []map[string]any {
		var recs []map[string]any
		for line := range strings.Lines(buf.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			recs = append(recs, rec)
		}
		return recs
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		t.Error(err)
	}
}

// loghNoTime drops the time so that lines can be compared exactly.
func loghNoTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

func TestNewLogHandler_contextFields(t *testing.T) {
	full := trace.ContextWithSpanContext(context.Background(), loggingSpanContext)
	full = hooks.WithCorrelationID(full, "corr-1")
	full = hooks.WithCausationID(full, "cause-1")
	full = watermillobs.WithFields(full, slog.String("tenant", "acme"), slog.Int("shard", 3))
	const fields = `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","correlation_id":"corr-1","causation_id":"cause-1","tenant":"acme","shard":3`

	tests := []struct {
		name string
		ctx  context.Context
		log  func(ctx context.Context, l *slog.Logger)
		want string
	}{
		{
			name: "background context adds nothing",
			ctx:  context.Background(),
			log:  func(ctx context.Context, l *slog.Logger) { l.InfoContext(ctx, "m", "a", 1) },
			want: `{"level":"INFO","msg":"m","a":1}`,
		},
		{
			name: "logging without a context adds nothing",
			ctx:  full,
			log:  func(_ context.Context, l *slog.Logger) { l.Info("m", "a", 1) },
			want: `{"level":"INFO","msg":"m","a":1}`,
		},
		{
			name: "all fields",
			ctx:  full,
			log:  func(ctx context.Context, l *slog.Logger) { l.InfoContext(ctx, "m", "a", 1) },
			want: `{"level":"INFO","msg":"m","a":1,` + fields + `}`,
		},
		{
			name: "correlation without a span",
			ctx:  hooks.WithCorrelationID(context.Background(), "corr-1"),
			log:  func(ctx context.Context, l *slog.Logger) { l.WarnContext(ctx, "m") },
			want: `{"level":"WARN","msg":"m","correlation_id":"corr-1"}`,
		},
		{
			name: "fields stay at the top level under groups",
			ctx:  full,
			log: func(ctx context.Context, l *slog.Logger) {
				l.With("svc", "orders").WithGroup("g").With("a", 1).WithGroup("h").InfoContext(ctx, "m", "b", 2)
			},
			want: `{"level":"INFO","msg":"m","svc":"orders",` + fields + `,"g":{"a":1,"h":{"b":2}}}`,
		},
		{
			name: "empty groups are left out",
			ctx:  full,
			log: func(ctx context.Context, l *slog.Logger) {
				l.WithGroup("g").WithGroup("h").InfoContext(ctx, "m")
			},
			want: `{"level":"INFO","msg":"m",` + fields + `}`,
		},
		{
			name: "groups without context fields",
			ctx:  context.Background(),
			log: func(ctx context.Context, l *slog.Logger) {
				l.WithGroup("g").With("a", 1).WithGroup("h").InfoContext(ctx, "m")
			},
			want: `{"level":"INFO","msg":"m","g":{"a":1}}`,
		},
		{
			name: "a key the record has is not added",
			ctx:  hooks.WithCorrelationID(context.Background(), "corr-ctx"),
			log: func(ctx context.Context, l *slog.Logger) {
				l.InfoContext(ctx, "m", "correlation_id", "corr-record")
			},
			want: `{"level":"INFO","msg":"m","correlation_id":"corr-record"}`,
		},
		{
			name: "a key added by With is not added",
			ctx:  hooks.WithCorrelationID(context.Background(), "corr-ctx"),
			log: func(ctx context.Context, l *slog.Logger) {
				l.With("correlation_id", "corr-with").WithGroup("g").InfoContext(ctx, "m", "correlation_id", "in-group")
			},
			want: `{"level":"INFO","msg":"m","correlation_id":"corr-with","g":{"correlation_id":"in-group"}}`,
		},
		{
			name: "wrapping twice adds the fields once",
			ctx:  hooks.WithCausationID(context.Background(), "cause-1"),
			log: func(ctx context.Context, l *slog.Logger) {
				slog.New(watermillobs.NewLogHandler(l.Handler())).InfoContext(ctx, "m")
			},
			want: `{"level":"INFO","msg":"m","causation_id":"cause-1"}`,
		},
		{
			name: "a huge correlation ID is bounded",
			ctx:  hooks.WithCorrelationID(context.Background(), strings.Repeat("c", 1000)),
			log:  func(ctx context.Context, l *slog.Logger) { l.InfoContext(ctx, "m") },
			want: `{"level":"INFO","msg":"m","correlation_id":"` + strings.Repeat("c", 253) + `…"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(watermillobs.NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: loghNoTime})))
			tt.log(tt.ctx, l)
			if got := strings.TrimSuffix(buf.String(), "\n"); got != tt.want {
				t.Errorf("log line\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestNewLogHandler_enabled(t *testing.T) {
	h := watermillobs.NewLogHandler(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h = h.WithGroup("g").WithAttrs([]slog.Attr{slog.Int("a", 1)})
	ctx := hooks.WithCorrelationID(context.Background(), "corr-1")
	if h.Enabled(ctx, slog.LevelInfo) {
		t.Error("Info enabled, want the wrapped handler's level Warn")
	}
	if !h.Enabled(ctx, slog.LevelError) {
		t.Error("Error disabled, want the wrapped handler's level Warn")
	}
}

func TestNewLogHandler_nil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewLogHandler(nil) did not panic")
		}
	}()
	watermillobs.NewLogHandler(nil)
}

func BenchmarkNewLogHandler(b *testing.B) {
	ctx := trace.ContextWithSpanContext(context.Background(), loggingSpanContext)
	ctx = hooks.WithCorrelationID(ctx, "corr-1")
	inner := slog.NewJSONHandler(io.Discard, nil)
	for _, bc := range []struct {
		name string
		l    *slog.Logger
	}{
		{name: "without wrapper", l: slog.New(inner)},
		{name: "wrapped", l: slog.New(watermillobs.NewLogHandler(inner))},
		{name: "wrapped with group", l: slog.New(watermillobs.NewLogHandler(inner)).WithGroup("g")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.l.InfoContext(ctx, "stock reserved", "id", "o-1")
			}
		})
	}
}
