package panics_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

type panicHandler struct{ slog.Handler }

func (panicHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (panicHandler) Handle(context.Context, slog.Record) error { panic("broken handler") }

type badStringer struct{}

func (badStringer) String() string { panic("bad String") }

func TestReport_logs_and_counts(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	before := panics.Count()
	panics.Report(context.Background(), logger, "recovered", "boom", slog.String("during", "start span"))
	if got := panics.Count() - before; got != 1 {
		t.Fatalf("count grew by %d, want 1", got)
	}
	out := buf.String()
	for _, want := range []string{`"msg":"recovered"`, `"panic":"boom"`, `"during":"start span"`, `"level":"ERROR"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %s", out, want)
		}
	}
}

func TestReport_survives_broken_logger_and_value(t *testing.T) {
	before := panics.Count()
	panics.Report(context.Background(), slog.New(panicHandler{}), "recovered", badStringer{})
	if got := panics.Count() - before; got != 1 {
		t.Fatalf("count grew by %d, want 1", got)
	}
}
