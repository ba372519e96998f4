package main

import (
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/internal/spanfile"
)

// spanRecord is one ended span, from this process's recorder or from the
// span files of every process; the format of internal/spanfile.
type spanRecord = spanfile.Span

// fromRecorder converts the spans rec holds, naming process as theirs.
func fromRecorder(rec *tracetest.SpanRecorder, process string) []spanRecord {
	ended := rec.Ended()
	out := make([]spanRecord, 0, len(ended))
	for _, s := range ended {
		out = append(out, spanfile.FromSpan(s, process))
	}
	return out
}

func duration(s spanRecord) time.Duration { return s.End.Sub(s.Start) }

// runSpans keeps the spans of the traces in roots and of the traces with a
// span linking into one of them (the queries, the outbox forwards): the
// spans of this run, even in a spans directory shared with earlier runs.
func runSpans(all []spanRecord, roots map[string]bool) []spanRecord {
	keep := make(map[string]bool, len(roots))
	for id := range roots {
		keep[id] = true
	}
	for _, s := range all {
		for _, l := range s.Links {
			if roots[l.TraceID] {
				keep[s.TraceID] = true
			}
		}
	}
	var out []spanRecord
	for _, s := range all {
		if keep[s.TraceID] {
			out = append(out, s)
		}
	}
	return out
}
