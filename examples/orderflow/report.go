package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/spanfile"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// Widths of the waterfall's columns.
const (
	nameWidth    = 54
	processWidth = 14
	barWidth     = 40
)

// report prints the waterfall of one order's trace and the summary of the
// run.
func (a *app) report(ctx context.Context, out io.Writer, res *runResult) {
	roots := make(map[string]bool, len(res.orders))
	for _, o := range res.orders {
		roots[o.span.TraceID().String()] = true
	}
	spans, err := a.collectSpans(ctx, roots)
	chosen := pick(res.orders)
	fmt.Fprintln(out)
	if err != nil {
		fmt.Fprintf(out, "no waterfall: %v\n", err)
	} else if chosen != nil {
		a.printWaterfall(out, spans, chosen)
	}
	a.printSummary(out, spans, res, chosen)
}

// collectSpans reads the spans of this run, from the spans directory when
// there is one (every process writes there), else from this process's
// recorder, once their number stopped growing: the last handlers of a
// run may still be ending theirs when the sagas ended.
func (a *app) collectSpans(ctx context.Context, roots map[string]bool) ([]spanRecord, error) {
	read := func() ([]spanRecord, error) {
		if a.cfg.spansDir != "" {
			all, err := spanfile.ReadDir(a.cfg.spansDir)
			if err != nil {
				return nil, err
			}
			return runSpans(all, roots), nil
		}
		return runSpans(fromRecorder(a.tel.recorder, a.tel.process), roots), nil
	}
	var spans []spanRecord
	last, stable := -1, 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && stable < 3; {
		var err error
		if spans, err = read(); err != nil {
			return nil, err
		}
		if len(spans) == last {
			stable++
		} else {
			last, stable = len(spans), 0
		}
		select {
		case <-ctx.Done():
			return spans, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	if len(spans) == 0 {
		return nil, errNoSpans
	}
	return spans, nil
}

// printWaterfall prints the span tree of o's trace, each span with its
// process, an offset-and-duration bar and its duration; errors and links
// marked; then the spans of other traces that link into it.
func (a *app) printWaterfall(out io.Writer, spans []spanRecord, o *placedOrder) {
	traceID := o.span.TraceID().String()
	byID := make(map[string]spanRecord, len(spans))
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var inTrace, linking []spanRecord
	linkingTraces := map[string]bool{}
	for _, s := range spans {
		if s.TraceID == traceID {
			inTrace = append(inTrace, s)
			continue
		}
		for _, l := range s.Links {
			if l.TraceID == traceID {
				linkingTraces[s.TraceID] = true
			}
		}
	}
	for _, s := range spans {
		if linkingTraces[s.TraceID] {
			linking = append(linking, s)
		}
	}
	shown := append(slices.Clone(inTrace), linking...)
	if len(inTrace) == 0 {
		fmt.Fprintf(out, "no spans of trace %s were recorded\n", traceID)
		return
	}
	start, end := shown[0].Start, shown[0].End
	for _, s := range shown {
		if s.Start.Before(start) {
			start = s.Start
		}
		if s.End.After(end) {
			end = s.End
		}
	}
	total := end.Sub(start)
	if total <= 0 {
		total = time.Microsecond
	}
	w := &waterfall{out: out, start: start, total: total, byID: byID, strip: a.cfg.prefix}

	outcome := o.outcome
	if o.reply != nil && o.reply.Status != "" {
		outcome += " (" + o.reply.Status + ")"
	}
	fmt.Fprintf(out, "Trace %s of %s: %s\n", traceID, o.id, outcome)
	fmt.Fprintf(out, "%-*s %-*s |%-*s| %10s\n", nameWidth, "span", processWidth, "process",
		barWidth, "0"+strings.Repeat(" ", barWidth-1-len(formatDuration(total)))+formatDuration(total), "duration")
	w.tree(inTrace)
	if len(linking) > 0 {
		fmt.Fprintln(out, "linked traces (a span there links to a span of this trace):")
		w.tree(linking)
	}
}

// waterfall prints span trees against one time axis.
type waterfall struct {
	out   io.Writer
	start time.Time
	total time.Duration
	byID  map[string]spanRecord
	strip string // the stream prefix, left out of span names
}

// tree prints the spans as trees by parent, roots first by start time.
func (w *waterfall) tree(spans []spanRecord) {
	ids := make(map[string]bool, len(spans))
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	children := map[string][]spanRecord{}
	var roots []spanRecord
	for _, s := range spans {
		if s.ParentID != "" && ids[s.ParentID] {
			children[s.ParentID] = append(children[s.ParentID], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b spanRecord) int { return a.Start.Compare(b.Start) }
	slices.SortFunc(roots, byStart)
	var walk func(s spanRecord, prefix string, last, root bool)
	walk = func(s spanRecord, prefix string, last, root bool) {
		branch, next := "", ""
		if !root {
			branch, next = "|- ", "|  "
			if last {
				branch, next = "`- ", "   "
			}
		}
		w.line(prefix+branch, s)
		kids := children[s.SpanID]
		slices.SortFunc(kids, byStart)
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true)
	}
}

// line prints one span.
func (w *waterfall) line(indent string, s spanRecord) {
	name := indent + strings.ReplaceAll(s.Name, w.strip, "")
	if detail := spanDetail(s); detail != "" {
		name += "  " + detail
	}
	if len(name) > nameWidth {
		name = name[:nameWidth-1] + "~"
	}
	fmt.Fprintf(w.out, "%-*s %-*s |%s| %10s", nameWidth, name, processWidth, cut(s.Process, processWidth),
		w.bar(s), formatDuration(duration(s)))
	if s.Status == "Error" {
		fmt.Fprint(w.out, "  !! ERROR")
		if t := s.Attrs["error.type"]; t != "" {
			fmt.Fprint(w.out, " "+t)
		}
	}
	for _, l := range s.Links {
		target := l.TraceID[:8] + "/" + l.SpanID[:8]
		if t, ok := w.byID[l.SpanID]; ok {
			target = strings.ReplaceAll(t.Name, w.strip, "") + " " + target
		}
		fmt.Fprint(w.out, "  -> link to "+target)
	}
	fmt.Fprintln(w.out)
}

// bar draws the span's offset and duration on the time axis.
func (w *waterfall) bar(s spanRecord) string {
	from := int(int64(barWidth) * int64(s.Start.Sub(w.start)) / int64(w.total))
	to := int(int64(barWidth) * int64(s.End.Sub(w.start)) / int64(w.total))
	from = min(max(from, 0), barWidth-1)
	to = min(max(to, from+1), barWidth)
	return strings.Repeat(" ", from) + strings.Repeat("=", to-from) + strings.Repeat(" ", barWidth-to)
}

// spanDetail is the short description of a span in the waterfall.
func spanDetail(s spanRecord) string {
	a := s.Attrs
	switch {
	case strings.HasPrefix(s.Name, "saga.run."):
		d := "step " + a["saga.step"] + " " + a["saga.from_state"] + " > " + a["saga.to_state"]
		if o := a["saga.outcome"]; o != "" && o != "running" {
			d += " (" + o + ")"
		}
		return d
	case strings.HasPrefix(s.Name, "send "), strings.HasPrefix(s.Name, "process "), strings.HasPrefix(s.Name, "receive "):
		return a["messaging.message.type"]
	}
	return ""
}

// printSummary prints the orders by final state, the handling durations
// per message kind, the errors and the correlation ID to search for.
func (a *app) printSummary(out io.Writer, spans []spanRecord, res *runResult, chosen *placedOrder) {
	states := map[string]int{}
	for _, o := range res.orders {
		state := o.outcome
		if state == "" {
			state = "not final (" + cmp.Or(o.status, "not started") + ")"
		}
		states[state]++
	}
	fmt.Fprintf(out, "\nOrders by final state (%d placed):\n", len(res.orders))
	for _, k := range sortedKeys(states) {
		fmt.Fprintf(out, "  %-28s %4d\n", k, states[k])
	}

	// Handling durations from the cqrs.{MessageType} spans, by kind, and
	// from the saga steps.
	groups := map[string][]time.Duration{}
	groupErrors := map[string]int{}
	processes := map[string]bool{}
	var errs []spanRecord
	for _, s := range spans {
		processes[s.Process] = true
		var group string
		switch {
		case strings.HasPrefix(s.Name, "cqrs."):
			group = s.Attrs["cqrs.message_kind"]
		case strings.HasPrefix(s.Name, "saga.run."):
			group = "saga step"
		}
		if group != "" {
			groups[group] = append(groups[group], duration(s))
			if s.Status == "Error" {
				groupErrors[group]++
			}
		}
		if s.Status == "Error" {
			errs = append(errs, s)
		}
	}
	fmt.Fprintf(out, "\nHandling duration by message kind (from %d spans of %d processes):\n", len(spans), len(processes))
	fmt.Fprintf(out, "  %-10s %6s %10s %10s %7s\n", "kind", "count", "p50", "p99", "errors")
	for _, k := range sortedKeys(groups) {
		d := groups[k]
		fmt.Fprintf(out, "  %-10s %6d %10s %10s %7d\n", k, len(d), formatDuration(percentile(d, 50)), formatDuration(percentile(d, 99)), groupErrors[k])
	}
	byName := map[string]int{}
	for _, s := range errs {
		byName[strings.ReplaceAll(s.Name, a.cfg.prefix, "")]++
	}
	fmt.Fprintf(out, "\nSpans with errors: %d\n", len(errs))
	for _, k := range sortedKeys(byName) {
		fmt.Fprintf(out, "  %-40s %4d\n", k, byName[k])
	}
	if chosen != nil {
		fmt.Fprintf(out, "\nOrder %s (%s): correlation ID %s\n", chosen.id, cmp.Or(chosen.outcome, "not final"), chosen.correlationID)
		fmt.Fprintf(out, "  Jaeger:  search tag messaging.message.conversation_id=%s (trace %s)\n", chosen.correlationID, chosen.span.TraceID())
		fmt.Fprintf(out, "  Grafana: logs with correlation_id=%q; metrics exemplars carry the trace ID\n", chosen.correlationID)
	}
	if res.stalled {
		fmt.Fprintln(out, "\nNot every order ended within -timeout.")
	}
	_ = sagas.OutcomeCompleted
}

// percentile returns the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100
	return s[max(rank, 1)-1]
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%dus", d.Microseconds())
	}
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
