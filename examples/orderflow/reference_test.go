package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/internal/spanfile"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// referencePath is the reference the test checks, relative to this
// package.
const referencePath = "../../docs/reference.md"

// notInDemo marks a documented row the demo does not produce.
const notInDemo = "(not in the demo)"

// refRow is one row of a table of docs/reference.md: its name (the first
// column, in backticks), the backticked names of its last column, and
// whether it is marked as not produced by the demo.
type refRow struct {
	name      string
	items     []string
	notInDemo bool
	// optional are the items marked notInDemo in the last column.
	optional map[string]bool
}

// reference is docs/reference.md by section (the "## " heading).
type reference map[string][]refRow

var backticked = regexp.MustCompile("`([^`]+)`")

// readReference parses the tables of docs/reference.md: in every section,
// every table row whose first cell is a backticked name.
func readReference(t *testing.T) reference {
	t.Helper()
	data, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	ref := reference{}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(h)
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		// Keep empty cells: only the outer pipes go.
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "|"), "|"), "|")
		m := backticked.FindStringSubmatch(cells[0])
		if m == nil {
			continue
		}
		row := refRow{name: m[1], notInDemo: strings.Contains(cells[0], notInDemo), optional: map[string]bool{}}
		if len(cells) > 1 {
			// The last column: backticked items separated by commas, each
			// optionally followed by the notInDemo marker.
			for _, piece := range strings.Split(cells[len(cells)-1], ",") {
				for _, im := range backticked.FindAllStringSubmatch(piece, -1) {
					row.items = append(row.items, im[1])
					if strings.Contains(piece, notInDemo) {
						row.optional[im[1]] = true
					}
				}
			}
		}
		ref[section] = append(ref[section], row)
	}
	return ref
}

// patternRE turns a documented name into a regexp: each "{x}" matches one
// or more characters (a dotted segment or the rest of the name).
func patternRE(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for pattern != "" {
		i := strings.Index(pattern, "{")
		j := strings.Index(pattern, "}")
		if i < 0 || j < i {
			b.WriteString(regexp.QuoteMeta(pattern))
			break
		}
		b.WriteString(regexp.QuoteMeta(pattern[:i]))
		b.WriteString(".+")
		pattern = pattern[j+1:]
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// match returns the row of rows whose name matches name, preferring a row
// without placeholders, then the longest literal prefix.
func match(rows []refRow, name string) (refRow, bool) {
	best, found, bestScore := refRow{}, false, -1
	for _, r := range rows {
		if !patternRE(r.name).MatchString(name) {
			continue
		}
		score := len(r.name)
		if !strings.Contains(r.name, "{") {
			score += 1 << 20
		} else {
			score = strings.Index(r.name, "{")
		}
		if score > bestScore {
			best, found, bestScore = r, true, score
		}
	}
	return best, found
}

// observed maps a name (an operation pattern, a span name pattern, a
// metric family, a log message) to the set of its keys (attributes,
// labels, fields).
type observed map[string]map[string]bool

func (o observed) add(name string, keys ...string) {
	if o[name] == nil {
		o[name] = map[string]bool{}
	}
	for _, k := range keys {
		o[name][k] = true
	}
}

// diff collects the differences between the doc and what ran.
type diff struct {
	undocumented, unobserved []string
	// markedSeen are rows marked notInDemo that this run produced: a
	// candidate for dropping the mark when the demo always produces it.
	markedSeen []string
}

func (d *diff) report(t *testing.T) {
	t.Helper()
	sort.Strings(d.undocumented)
	sort.Strings(d.unobserved)
	if len(d.markedSeen) > 0 {
		sort.Strings(d.markedSeen)
		t.Logf("marked %q but produced by this run (%d):\n  %s", notInDemo, len(d.markedSeen), strings.Join(d.markedSeen, "\n  "))
	}
	if len(d.undocumented) > 0 {
		t.Errorf("emitted by the demo but missing from docs/reference.md (%d):\n  %s", len(d.undocumented), strings.Join(d.undocumented, "\n  "))
	}
	if len(d.unobserved) > 0 {
		t.Errorf("in docs/reference.md but not emitted by the demo; emit it or mark the row %q (%d):\n  %s", notInDemo, len(d.unobserved), strings.Join(d.unobserved, "\n  "))
	}
}

// compare checks one section: every observed name matches a row, every
// observed key is in the row's items (or in common, the keys any row may
// have), and every row and item not marked notInDemo was observed. Names
// are mapped to rows by their patterns first.
func (d *diff) compare(section string, rows []refRow, common []string, got observed) {
	byRow := observed{}
	for name, keys := range got {
		r, ok := match(rows, name)
		if !ok {
			d.undocumented = append(d.undocumented, fmt.Sprintf("%s: %s (keys %s)", section, name, strings.Join(sortedKeys(keys), ", ")))
			continue
		}
		byRow.add(r.name)
		for k := range keys {
			byRow.add(r.name, k)
		}
	}
	seenCommon := map[string]bool{}
	for _, r := range rows {
		keys, seen := byRow[r.name]
		if !seen {
			if !r.notInDemo {
				d.unobserved = append(d.unobserved, section+": "+r.name)
			}
			continue
		}
		for k := range keys {
			if slices.Contains(common, k) {
				seenCommon[k] = true
				continue
			}
			if !slices.Contains(r.items, k) {
				d.undocumented = append(d.undocumented, fmt.Sprintf("%s: %s: key %s", section, r.name, k))
			}
		}
		if r.notInDemo {
			d.markedSeen = append(d.markedSeen, section+": "+r.name)
			continue
		}
		for _, k := range r.items {
			if !keys[k] && !r.optional[k] && !slices.Contains(common, k) {
				d.unobserved = append(d.unobserved, fmt.Sprintf("%s: %s: key %s", section, r.name, k))
			}
		}
	}
	for _, k := range common {
		if !seenCommon[k] {
			d.unobserved = append(d.unobserved, fmt.Sprintf("%s: common key %s", section, k))
		}
	}
}

// items returns the items of the rows of a section, the rows' names when
// names is set.
func items(rows []refRow, names bool) []string {
	var out []string
	for _, r := range rows {
		if names {
			out = append(out, r.name)
		} else {
			out = append(out, r.items...)
		}
	}
	return out
}

// demoRun is what one run of the demo emitted.
type demoRun struct {
	operations observed // operation name -> attribute keys
	spans      observed // span name -> attribute keys
	metrics    observed // "name type" -> label names
	logs       observed // log message -> field keys
}

// runDemoForReference runs the demo in one process ("all") on Redis and
// PostgreSQL with every hook operation traced and logged, scrapes its
// /metrics after the orders and stops it with SIGTERM.
func runDemoForReference(t *testing.T) demoRun {
	t.Helper()
	_, prefix := testsvc.RedisPrefix(t)
	_, schema := testsvc.Postgres(t)
	dsn := testsvc.DSNWithSearchPath(testsvc.PostgresDSN(), schema)
	dir := t.TempDir()
	p := start(t, "orderflow", cleanEnv("REDIS_ADDR="+testsvc.RedisAddr(), "POSTGRES_DSN="+dsn),
		"-prefix", prefix, "-spans-dir", dir, "-metrics-addr", "127.0.0.1:0", "-keep-running", "-trace-all",
		"-orders", "10", "-payment-timeout", "1s", "-timeout", "30s")
	p.waitLog(t, "orders done; running until SIGINT or SIGTERM (-keep-running)", 40*time.Second)

	run := demoRun{operations: observed{}, spans: observed{}, metrics: observed{}, logs: observed{}}
	scrape(t, metricsAddr(t, p.stdout.String()), run.metrics)
	p.stop(t)

	for line := range logLines(p.stdout.String()) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("a log line is not JSON: %v\n%s", err, line)
		}
		if rec["logger"] == "watermill" {
			// Watermill's own warnings and errors: its messages, which
			// depend on timing (a poll cut by the shutdown), not ours.
			continue
		}
		msg, _ := rec["msg"].(string)
		if msg == "hook operation" {
			op, _ := rec["operation"].(string)
			run.operations.add(op)
			keys, _ := rec["attr_keys"].([]any)
			for _, k := range keys {
				run.operations.add(op, fmt.Sprint(k))
			}
		}
		run.logs.add(msg)
		for k := range rec {
			if k != "time" && k != "level" && k != "msg" {
				run.logs.add(msg, k)
			}
		}
	}
	spans, err := spanfile.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) == 0 {
		t.Fatal("no spans written")
	}
	for _, s := range spans {
		run.spans.add(s.Name)
		for k := range s.Attrs {
			run.spans.add(s.Name, k)
		}
	}
	return run
}

// metricsAddr reads the address the demo logged it serves /metrics on.
func metricsAddr(t *testing.T, stdout string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving metrics" {
			return rec.Addr
		}
	}
	t.Fatal("no \"serving metrics\" line")
	return ""
}

// scrape reads /metrics in the Prometheus text format into got: "name
// type" -> label names.
func scrape(t *testing.T, addr string, got observed) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	for name, mf := range families {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue // client_golang's Go and process collectors, not this module's
		}
		key := name + " " + strings.ToLower(mf.GetType().String())
		got.add(key)
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				got.add(key, lp.GetName())
			}
		}
	}
}

// metricRows turns the metric rows ("name", type column, labels) into
// rows named "name type" as scrape reports them.
func metricRows(t *testing.T, rows []refRow, doc string) []refRow {
	t.Helper()
	out := make([]refRow, 0, len(rows))
	typeRE := regexp.MustCompile(`\| *(counter|gauge|histogram|summary|untyped) *\|`)
	for _, r := range rows {
		line := ""
		for _, l := range strings.Split(doc, "\n") {
			if strings.HasPrefix(l, "| `"+r.name+"`") {
				line = l
				break
			}
		}
		m := typeRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("docs/reference.md: metric %s has no type column", r.name)
		}
		r.name += " " + m[1]
		out = append(out, r)
	}
	return out
}

// TestReference runs the demo on Redis and PostgreSQL with every hook
// operation traced and compares what it emitted (hook operations and
// their attributes, spans and their attributes, metric families and their
// labels and types, log messages and their fields) with docs/reference.md,
// in both directions.
func TestReference(t *testing.T) {
	ref := readReference(t)
	for _, s := range []string{"Metadata keys", "Hook operations", "Spans", "Hook-operation span attributes", "Metrics", "Log fields", "Log messages"} {
		if len(ref[s]) == 0 {
			t.Fatalf("docs/reference.md has no table in section %q", s)
		}
	}
	run := runDemoForReference(t)
	doc, _ := os.ReadFile(referencePath)

	var d diff
	d.compare("Hook operations", ref["Hook operations"], nil, run.operations)
	d.compare("Spans", ref["Spans"], items(ref["Hook-operation span attributes"], true), run.spans)
	d.compare("Metrics", metricRows(t, ref["Metrics"], string(doc)), nil, run.metrics)
	d.compare("Log messages", ref["Log messages"], items(ref["Log fields"], true), run.logs)

	// The metadata keys are the contract's constants.
	want := []string{contract.CorrelationIDKey, contract.CausationIDKey, contract.TraceparentKey, contract.TracestateKey,
		contract.BaggageKey, contract.NameKey, contract.MessageKindKey, contract.PublishedAtKey}
	documented := items(ref["Metadata keys"], true)
	for _, k := range want {
		if !slices.Contains(documented, k) {
			d.undocumented = append(d.undocumented, "Metadata keys: "+k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(want, k) {
			d.unobserved = append(d.unobserved, "Metadata keys: "+k+" (not a contract key)")
		}
	}
	d.report(t)
	if t.Failed() {
		t.Logf("observed: %d operation names, %d span names, %d metric families, %d log messages",
			len(run.operations), len(run.spans), len(run.metrics), len(run.logs))
	}
}
