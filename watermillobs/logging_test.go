package watermillobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// loggingSpanContext is a fixed, valid, sampled span context.
var loggingSpanContext = trace.NewSpanContext(trace.SpanContextConfig{
	TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
	SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	TraceFlags: trace.FlagsSampled,
})

// loggingBuffer is an io.Writer safe for concurrent use.
type loggingBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *loggingBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *loggingBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// loggingRecords parses JSON log lines, failing on any line that is not
// valid UTF-8 JSON.
func loggingRecords(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(out) {
		if !utf8.ValidString(line) {
			t.Fatalf("log line is not valid UTF-8: %q", line)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// loggingHandle runs msg through the Logging middleware with a JSON logger at
// level and returns the log records.
func loggingHandle(t *testing.T, level slog.Level, msg *message.Message, h message.HandlerFunc) ([]map[string]any, []*message.Message, error) {
	t.Helper()
	var buf loggingBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level}))
	out, err := watermillobs.Logging(watermillobs.WithLogger(logger))(h)(msg)
	return loggingRecords(t, buf.String()), out, err
}

func TestLogging_fields(t *testing.T) {
	msg := message.NewMessage("msg-1", []byte(`{}`))
	msg.Metadata.Set(contract.NameKey, "PlaceOrder")
	msg.Metadata.Set(contract.MessageKindKey, contract.KindCommand)
	msg.Metadata.Set(contract.CorrelationIDKey, "corr-1")
	msg.Metadata.Set(contract.CausationIDKey, "cause-1")
	msg.SetContext(trace.ContextWithSpanContext(context.Background(), loggingSpanContext))

	recs, _, err := loggingHandle(t, slog.LevelInfo, msg, func(*message.Message) ([]*message.Message, error) {
		time.Sleep(2 * time.Millisecond)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	rec := recs[0]
	for key, want := range map[string]any{
		"level":          "INFO",
		"msg":            "message handled",
		"kind":           "command",
		"message_type":   "PlaceOrder",
		"outcome":        "success",
		"message_uuid":   "msg-1",
		"correlation_id": "corr-1",
		"causation_id":   "cause-1",
		"trace_id":       "4bf92f3577b34da6a3ce929d0e0e4736",
		"span_id":        "00f067aa0ba902b7",
	} {
		if rec[key] != want {
			t.Errorf("%s = %#v, want %#v", key, rec[key], want)
		}
	}
	if d, ok := rec["duration_ms"].(float64); !ok || d < 2 || d > 10_000 {
		t.Errorf("duration_ms = %#v, want a number of milliseconds >= 2", rec["duration_ms"])
	}
	for _, key := range []string{"error", "panic", "handler", "topic"} {
		if v, ok := rec[key]; ok {
			t.Errorf("unexpected field %s = %#v", key, v)
		}
	}
}

func TestLogging_optionalFieldsOmitted(t *testing.T) {
	recs, _, _ := loggingHandle(t, slog.LevelInfo, message.NewMessage("msg-1", nil),
		func(*message.Message) ([]*message.Message, error) { return nil, nil })
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	for _, key := range []string{"causation_id", "trace_id", "span_id", "handler", "topic"} {
		if v, ok := recs[0][key]; ok {
			t.Errorf("unexpected field %s = %#v", key, v)
		}
	}
	if recs[0]["kind"] != "message" || recs[0]["message_type"] != "unknown" || recs[0]["correlation_id"] != "" {
		t.Errorf("record = %v, want kind message, message_type unknown, empty correlation_id", recs[0])
	}
}

type loggingNilError struct{ msg string }

func (e *loggingNilError) Error() string { return e.msg }

func TestLogging_outcomes(t *testing.T) {
	var typedNil *loggingNilError
	tests := []struct {
		name      string
		level     slog.Level // logger level
		err       error
		wantLevel string // "" for no record
		wantError string
	}{
		{name: "success", level: slog.LevelInfo, wantLevel: "INFO"},
		{name: "error", level: slog.LevelInfo, err: errors.New("stock reservation failed"), wantLevel: "ERROR", wantError: "stock reservation failed"},
		{name: "deadline exceeded", level: slog.LevelInfo, err: fmt.Errorf("cannot reserve: %w", context.DeadlineExceeded), wantLevel: "ERROR", wantError: "cannot reserve: context deadline exceeded"},
		{name: "canceled at debug", level: slog.LevelDebug, err: fmt.Errorf("cannot reserve: %w", context.Canceled), wantLevel: "DEBUG", wantError: "cannot reserve: context canceled"},
		{name: "canceled not logged at info", level: slog.LevelInfo, err: context.Canceled},
		{name: "success not logged at warn", level: slog.LevelWarn},
		{name: "error method panics on nil receiver", level: slog.LevelInfo, err: typedNil, wantLevel: "ERROR", wantError: "<nil>"},
		{name: "long error bounded", level: slog.LevelInfo, err: errors.New(strings.Repeat("é", 5000)), wantLevel: "ERROR", wantError: strings.Repeat("é", 510) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			produced := []*message.Message{message.NewMessage("out-1", nil)}
			recs, out, err := loggingHandle(t, tt.level, message.NewMessage("msg-1", nil),
				func(*message.Message) ([]*message.Message, error) { return produced, tt.err })
			if err != tt.err || len(out) != 1 || out[0] != produced[0] {
				t.Errorf("results = %v, %v; want the handler's", out, err)
			}
			if tt.wantLevel == "" {
				if len(recs) != 0 {
					t.Errorf("got records %v, want none", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			rec := recs[0]
			wantOutcome := "success"
			if tt.err != nil {
				wantOutcome = "error"
			}
			if rec["level"] != tt.wantLevel || rec["outcome"] != wantOutcome {
				t.Errorf("level, outcome = %v, %v; want %v, %v", rec["level"], rec["outcome"], tt.wantLevel, wantOutcome)
			}
			if got, _ := rec["error"].(string); got != tt.wantError {
				t.Errorf("error = %q, want %q", got, tt.wantError)
			}
			if got, _ := rec["error"].(string); len(got) > 1024 {
				t.Errorf("error field is %d bytes, want at most 1024", len(got))
			}
		})
	}
}

type loggingBadStringer struct{}

func (*loggingBadStringer) String() string { panic("String is broken") }

func TestLogging_panic(t *testing.T) {
	tests := []struct {
		name      string
		value     any
		wantPanic string
	}{
		{name: "error value", value: errors.New("boom"), wantPanic: "boom"},
		{name: "string value", value: "boom", wantPanic: "boom"},
		{name: "value whose String panics", value: &loggingBadStringer{}, wantPanic: "%!v(PANIC=String method: String is broken)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf loggingBuffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			h := watermillobs.Logging(watermillobs.WithLogger(logger))(func(*message.Message) ([]*message.Message, error) {
				panic(tt.value)
			})
			func() {
				defer func() {
					if r := recover(); r != tt.value {
						t.Errorf("recovered %v, want the handler's panic value", r)
					}
				}()
				_, _ = h(message.NewMessage("msg-1", nil))
				t.Error("the panic did not propagate")
			}()
			recs := loggingRecords(t, buf.String())
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			if recs[0]["level"] != "ERROR" || recs[0]["outcome"] != "error" || recs[0]["panic"] != tt.wantPanic {
				t.Errorf("record = %v, want ERROR, outcome error, panic %q", recs[0], tt.wantPanic)
			}
		})
	}
}

// loggingPanickingHandler is a slog.Handler that panics, standing in for a
// broken log pipeline.
type loggingPanickingHandler struct{ slog.Handler }

func (loggingPanickingHandler) Handle(context.Context, slog.Record) error { panic("handler broken") }

func TestLogging_brokenLoggerDoesNotFailMessage(t *testing.T) {
	logger := slog.New(loggingPanickingHandler{slog.DiscardHandler})
	wantErr := errors.New("handler error")
	_, err := watermillobs.Logging(watermillobs.WithLogger(logger))(func(*message.Message) ([]*message.Message, error) {
		return nil, wantErr
	})(message.NewMessage("msg-1", nil))
	if err != wantErr {
		t.Errorf("err = %v, want the handler's error", err)
	}
}

func TestLogging_hostileMetadata(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	msg := message.NewMessage(huge, nil)
	msg.Metadata.Set(contract.CorrelationIDKey, huge)
	msg.Metadata.Set(contract.CausationIDKey, "bad id with spaces")
	msg.Metadata.Set(contract.NameKey, "Place\xffOrder\xc3"+huge)
	msg.Metadata.Set(contract.MessageKindKey, "<script>")

	tests := []struct {
		name string
		ctx  context.Context
	}{
		{name: "metadata only", ctx: context.Background()},
		{name: "huge correlation ID in context", ctx: hooks.WithCorrelationID(context.Background(), "\xff"+huge)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg.SetContext(tt.ctx)
			recs, _, _ := loggingHandle(t, slog.LevelInfo, msg, func(*message.Message) ([]*message.Message, error) {
				return nil, errors.New(huge)
			})
			if len(recs) != 1 {
				t.Fatalf("got %d records, want 1", len(recs))
			}
			rec := recs[0]
			for key, v := range rec {
				s, ok := v.(string)
				if !ok {
					continue
				}
				limit := 256
				if key == "error" {
					limit = 1024
				}
				if len(s) > limit {
					t.Errorf("%s is %d bytes, want at most %d", key, len(s), limit)
				}
			}
			if rec["kind"] != "message" {
				t.Errorf("kind = %v, want message", rec["kind"])
			}
			if mt, _ := rec["message_type"].(string); !strings.HasPrefix(mt, "Place\uFFFDOrder\uFFFD") {
				t.Errorf("message_type = %.40q..., want invalid bytes replaced", mt)
			}
			if _, ok := rec["causation_id"]; ok {
				t.Errorf("malformed causation_id %q logged", rec["causation_id"])
			}
		})
	}
}

func TestAllocs_logging_disabled_level(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(&loggingBuffer{}, &slog.HandlerOptions{Level: slog.LevelError}))
	h := watermillobs.Logging(watermillobs.WithLogger(logger))(func(*message.Message) ([]*message.Message, error) {
		return nil, nil
	})
	msg := message.NewMessage("msg-1", nil)
	msg.Metadata.Set(contract.NameKey, "PlaceOrder")
	if allocs := testing.AllocsPerRun(100, func() { _, _ = h(msg) }); allocs != 0 {
		t.Errorf("%v allocations per message with the level disabled, want 0", allocs)
	}
}

func TestLogging_withLogHandler(t *testing.T) {
	var buf loggingBuffer
	logger := slog.New(watermillobs.NewLogHandler(slog.NewJSONHandler(&buf, nil)))
	msg := message.NewMessage("msg-1", nil)
	ctx := trace.ContextWithSpanContext(context.Background(), loggingSpanContext)
	ctx = hooks.WithCorrelationID(ctx, "corr-1")
	ctx = watermillobs.WithFields(ctx, slog.String("tenant", "acme"))
	msg.SetContext(ctx)
	_, _ = watermillobs.Logging(watermillobs.WithLogger(logger))(func(*message.Message) ([]*message.Message, error) {
		return nil, nil
	})(msg)
	line := buf.String()
	for _, key := range []string{"trace_id", "span_id", "correlation_id", "tenant"} {
		if n := strings.Count(line, `"`+key+`":`); n != 1 {
			t.Errorf("%s appears %d times in %s, want once", key, n, line)
		}
	}
}

func TestLogging_router(t *testing.T) {
	var buf loggingBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(watermillobs.Logging(watermillobs.WithLogger(logger)))
	router.AddConsumerHandler("reserve-stock", "orders", pubSub, func(*message.Message) error { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	<-router.Running()
	if err := pubSub.Publish("orders", message.NewMessage("msg-1", []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for buf.String() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	recs := loggingRecords(t, buf.String())
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	if recs[0]["handler"] != "reserve-stock" || recs[0]["topic"] != "orders" || recs[0]["message_type"] != "reserve-stock" {
		t.Errorf("record = %v, want handler reserve-stock, topic orders, message_type from the handler name", recs[0])
	}
}

func BenchmarkLogging(b *testing.B) {
	next := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	quiet := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	for _, bc := range []struct {
		name string
		h    message.HandlerFunc
	}{
		{name: "without middleware", h: next},
		{name: "level disabled", h: watermillobs.Logging(watermillobs.WithLogger(quiet))(next)},
		{name: "logged", h: watermillobs.Logging(watermillobs.WithLogger(logger))(next)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			msg := message.NewMessage("msg-1", nil)
			msg.Metadata.Set(contract.NameKey, "PlaceOrder")
			msg.Metadata.Set(contract.CorrelationIDKey, "corr-1")
			msg.SetContext(trace.ContextWithSpanContext(context.Background(), loggingSpanContext))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = bc.h(msg)
			}
		})
	}
}
