package spanfile

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestExporter_round_trip(t *testing.T) {
	dir := t.TempDir()
	exp, err := NewExporter(filepath.Join(dir, "a.jsonl"), "proc-a")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "parent")
	_, child := tp.Tracer("t").Start(ctx, "child",
		trace.WithAttributes(attribute.String("saga.id", "o-1"), attribute.Int64("saga.step", 2)),
		trace.WithLinks(trace.Link{SpanContext: parent.SpanContext()}))
	child.End()
	parent.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A line cut short, as by SIGKILL, is skipped.
	f, err := os.OpenFile(filepath.Join(dir, "a.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"process":"proc-a","na`)
	_ = f.Close()

	spans, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 2 {
		t.Fatalf("read %d spans, want 2: %+v", len(spans), spans)
	}
	c, p := spans[0], spans[1]
	if c.Name != "child" || p.Name != "parent" || c.Process != "proc-a" {
		t.Fatalf("spans %+v", spans)
	}
	if c.ParentID != p.SpanID || c.TraceID != p.TraceID || p.ParentID != "" {
		t.Errorf("parentage: child %+v parent %+v", c, p)
	}
	if c.Attrs["saga.id"] != "o-1" || c.Attrs["saga.step"] != "2" {
		t.Errorf("attrs %v", c.Attrs)
	}
	if len(c.Links) != 1 || c.Links[0].SpanID != p.SpanID {
		t.Errorf("links %v", c.Links)
	}
}
