// Package spanfile lets the processes of a multi-process test write the
// spans they end to one JSON-lines file each, and the test read them all
// back, so that traces that cross processes can be checked without an
// OTLP collector. It is for tests: it imports the OpenTelemetry SDK.
package spanfile

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Span is one ended span as written to a file.
type Span struct {
	Process  string            `json:"process"`
	Name     string            `json:"name"`
	TraceID  string            `json:"trace_id"`
	SpanID   string            `json:"span_id"`
	ParentID string            `json:"parent_id,omitempty"`
	Links    []Link            `json:"links,omitempty"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Status   string            `json:"status,omitempty"`
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
}

// Link is a span link.
type Link struct {
	TraceID string `json:"trace_id"`
	SpanID  string `json:"span_id"`
}

// Exporter is an sdktrace.SpanExporter that appends every span to a file,
// one JSON object per line, flushed on every export so that a process
// killed with SIGKILL keeps what it exported before.
type Exporter struct {
	process string
	mu      sync.Mutex
	f       *os.File
}

// NewExporter creates (or truncates) path and returns an exporter that
// writes the spans of process to it.
func NewExporter(path, process string) (*Exporter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spanfile: %w", err)
	}
	return &Exporter{process: process, f: f}, nil
}

// ExportSpans writes spans.
func (e *Exporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	var buf []byte
	for _, s := range spans {
		line, err := json.Marshal(FromSpan(s, e.process))
		if err != nil {
			return fmt.Errorf("spanfile: %w", err)
		}
		buf = append(append(buf, line...), '\n')
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return errors.New("spanfile: exporter shut down")
	}
	if _, err := e.f.Write(buf); err != nil {
		return fmt.Errorf("spanfile: %w", err)
	}
	return nil
}

// FromSpan converts an ended span of process to the file's form.
func FromSpan(s sdktrace.ReadOnlySpan, process string) Span {
	out := Span{
		Process: process,
		Name:    s.Name(),
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Status:  s.Status().Code.String(),
		Start:   s.StartTime(),
		End:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		out.ParentID = p.SpanID().String()
	}
	for _, l := range s.Links() {
		out.Links = append(out.Links, Link{TraceID: l.SpanContext.TraceID().String(), SpanID: l.SpanContext.SpanID().String()})
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		out.Attrs = make(map[string]string, len(attrs))
		for _, kv := range attrs {
			out.Attrs[string(kv.Key)] = kv.Value.String()
		}
	}
	return out
}

// Shutdown closes the file.
func (e *Exporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := e.f.Close()
	e.f = nil
	return err
}

// ReadDir reads the spans of every *.jsonl file in dir. A last line cut
// short by a killed process is skipped.
func ReadDir(dir string) ([]Span, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, err
	}
	var all []Span
	for _, p := range paths {
		spans, err := readFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, spans...)
	}
	return all, nil
}

func readFile(path string) ([]Span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("spanfile: %w", err)
	}
	defer f.Close()
	var spans []Span
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var s Span
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			continue // a line cut short by SIGKILL
		}
		spans = append(spans, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("spanfile: %s: %w", path, err)
	}
	return spans, nil
}
