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
)

// Widths of the waterfall's columns.
const (
	maxNameWidth = 96
	processWidth = 13
	barWidth     = 30
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
// marked; then, each on its own time axis, the traces that link into it
// (the status queries, the outbox forwards).
func (a *app) printWaterfall(out io.Writer, spans []spanRecord, o *placedOrder) {
	traceID := o.span.TraceID().String()
	byID := make(map[string]spanRecord, len(spans))
	byTrace := map[string][]spanRecord{}
	for _, s := range spans {
		byID[s.SpanID] = s
		byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
	}
	if len(byTrace[traceID]) == 0 {
		fmt.Fprintf(out, "no spans of trace %s were recorded\n", traceID)
		return
	}
	var linking []string
	for id, ss := range byTrace {
		if id != traceID && slices.ContainsFunc(ss, func(s spanRecord) bool {
			return slices.ContainsFunc(s.Links, func(l spanfile.Link) bool { return l.TraceID == traceID })
		}) {
			linking = append(linking, id)
		}
	}
	slices.SortFunc(linking, func(x, y string) int { return traceStart(byTrace[x]).Compare(traceStart(byTrace[y])) })

	outcome := o.outcome
	if o.reply != nil && o.reply.Status != "" {
		outcome += " (" + o.reply.Status + ")"
	}
	processes := map[string]bool{}
	for _, s := range byTrace[traceID] {
		processes[s.Process] = true
	}
	fmt.Fprintf(out, "Trace %s of %s: %s, %d spans in %d processes\n", traceID, o.id, outcome, len(byTrace[traceID]), len(processes))
	if a.cfg.role == roleAPI && a.cfg.spansDir == "" {
		fmt.Fprintln(out, "(this process's spans only: give every process -spans-dir DIR for theirs, or export them with OTLP)")
	}
	w := &waterfall{out: out, byID: byID, strip: a.cfg.prefix}
	w.section(byTrace[traceID])
	for _, id := range linking {
		fmt.Fprintf(out, "\nTrace %s, linked to it:\n", id)
		w.section(byTrace[id])
	}
}

func traceStart(spans []spanRecord) time.Time {
	start := spans[0].Start
	for _, s := range spans {
		if s.Start.Before(start) {
			start = s.Start
		}
	}
	return start
}

// waterfall prints span trees, each against its own time axis.
type waterfall struct {
	out       io.Writer
	nameWidth int
	start     time.Time
	total     time.Duration
	byID      map[string]spanRecord
	strip     string // the stream prefix, left out of span names
}

// section prints the spans of one trace with a header and their axis.
func (w *waterfall) section(spans []spanRecord) {
	w.start = traceStart(spans)
	end := spans[0].End
	for _, s := range spans {
		if s.End.After(end) {
			end = s.End
		}
	}
	w.total = max(end.Sub(w.start), time.Microsecond)
	rows := w.tree(spans)
	w.nameWidth = len("span")
	for _, r := range rows {
		w.nameWidth = max(w.nameWidth, len(w.label(r)))
	}
	w.nameWidth = min(w.nameWidth, maxNameWidth)
	total := formatDuration(w.total)
	fmt.Fprintf(w.out, "%-*s %-*s |0%*s| %9s\n", w.nameWidth, "span", processWidth, "process", barWidth-1, total, "duration")
	for _, r := range rows {
		w.line(r)
	}
}

// row is one line of a waterfall: a span and the spans folded onto it.
type row struct {
	indent string
	spans  []spanRecord
}

// folded reports whether a span is printed on its parent's line: the
// handling spans of the one message a process span handles
// (process events > cqrs.OrderPlaced > event.dispatch.OrderPlaced).
func folded(parent, child spanRecord) bool {
	return parent.Process == child.Process &&
		(strings.HasPrefix(child.Name, "cqrs.") && strings.HasPrefix(parent.Name, "process ") ||
			strings.HasPrefix(child.Name, "event.dispatch.") && strings.HasPrefix(parent.Name, "cqrs."))
}

// tree orders the spans as trees by parent, roots first by start time.
func (w *waterfall) tree(spans []spanRecord) []row {
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
	var rows []row
	var walk func(s spanRecord, prefix string, last, root bool)
	walk = func(s spanRecord, prefix string, last, root bool) {
		branch, next := "", ""
		if !root {
			branch, next = "|-", "| "
			if last {
				branch, next = "`-", "  "
			}
		}
		// Fold the handling spans of one message onto one line.
		line := []spanRecord{s}
		kids := children[s.SpanID]
		for len(kids) == 1 && folded(line[len(line)-1], kids[0]) {
			line = append(line, kids[0])
			kids = children[kids[0].SpanID]
		}
		rows = append(rows, row{prefix + branch, line})
		slices.SortFunc(kids, byStart)
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1, false)
		}
	}
	for _, r := range roots {
		walk(r, "", true, true)
	}
	return rows
}

// label is the name column of a row.
func (w *waterfall) label(r row) string {
	spans := r.spans
	names := make([]string, 0, len(spans))
	for i, f := range spans {
		name := strings.ReplaceAll(f.Name, w.strip, "")
		if i > 0 && strings.HasPrefix(name, "event.dispatch.") {
			name = "dispatch" // the event type is in the cqrs span's name
		}
		names = append(names, name)
	}
	name := r.indent + strings.Join(names, " > ")
	if detail := spanDetail(spans[len(spans)-1]); detail != "" {
		name += "  " + detail
	}
	return name
}

// line prints one row.
func (w *waterfall) line(r row) {
	spans := r.spans
	s := spans[0]
	name := w.label(r)
	if len(name) > w.nameWidth {
		name = name[:w.nameWidth-1] + "~"
	}
	fmt.Fprintf(w.out, "%-*s %-*s |%s| %9s", w.nameWidth, name, processWidth, cut(s.Process, processWidth),
		w.bar(s), formatDuration(duration(s)))
	for _, f := range spans {
		if f.Status == "Error" {
			fmt.Fprint(w.out, "  !! ERROR")
			if t := f.Attrs["error.type"]; t != "" {
				fmt.Fprint(w.out, " "+t)
			}
			break
		}
	}
	for _, f := range spans {
		for _, l := range f.Links {
			target := l.TraceID[:8] + "/" + l.SpanID[:8]
			if t, ok := w.byID[l.SpanID]; ok {
				target = strings.ReplaceAll(t.Name, w.strip, "") + " in trace " + l.TraceID[:8]
			}
			fmt.Fprint(w.out, "  -> link to "+target)
		}
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
		d := "step " + a["saga.step"] + " -> " + a["saga.to_state"]
		if o := a["saga.outcome"]; o != "" && o != "running" {
			d += " (" + o + ")"
		}
		return d
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
	summaries := map[string]int{}
	for _, o := range res.orders {
		if o.reply != nil {
			summaries[cmp.Or(o.reply.Summary, "not seen")]++
		}
	}
	if len(summaries) > 0 {
		fmt.Fprintf(out, "\nOrders by summary (projection %s, through GetOrderStatus):\n", summaryName)
		for _, k := range sortedKeys(summaries) {
			fmt.Fprintf(out, "  %-28s %4d\n", k, summaries[k])
		}
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
