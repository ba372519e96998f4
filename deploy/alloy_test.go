package deploy

import (
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// alloySource returns config.alloy without its comments, strings kept.
// Alloy is not installed here, so the checks below read the file
// themselves: enough to catch a dangling reference or a wrong field name,
// not a full validation (alloy fmt does that where Alloy is installed).
func alloySource(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(alloyConfig)
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	var b strings.Builder
	depth := map[byte]int{}
	closing := map[byte]byte{'}': '{', ']': '[', ')': '('}
	for i := 0; i < len(src); i++ {
		switch c := src[i]; {
		case c == '"':
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				if j < len(src) && src[j] == '\n' {
					t.Fatalf("%s: a string is not closed on its line", alloyConfig)
				}
				j++
			}
			if j >= len(src) {
				t.Fatalf("%s: unterminated string", alloyConfig)
			}
			b.WriteString(src[i : j+1])
			i = j
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i:], "*/")
			if end < 0 {
				t.Fatalf("%s: unterminated block comment", alloyConfig)
			}
			i += end + 1
		default:
			if c == '{' || c == '[' || c == '(' {
				depth[c]++
			}
			if open, ok := closing[c]; ok {
				depth[open]--
				if depth[open] < 0 {
					t.Fatalf("%s: unbalanced %q", alloyConfig, c)
				}
			}
			b.WriteByte(c)
		}
	}
	for open, n := range depth {
		if n != 0 {
			t.Fatalf("%s: unbalanced %q", alloyConfig, open)
		}
	}
	return b.String()
}

// alloyBlock returns the body of the first block whose header matches
// header (for instance `stage.json`), or "".
func alloyBlock(src, header string) string {
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(header) + `(\s+"[^"]*")?\s*\{`)
	loc := re.FindStringIndex(src)
	if loc == nil {
		return ""
	}
	depth := 1
	for i := loc[1]; i < len(src); i++ {
		switch src[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return src[loc[1]:i]
			}
		}
	}
	return ""
}

var alloyKeyRE = regexp.MustCompile(`(?m)^\s*"?([A-Za-z_]+)"?\s*=`)

// alloyMapKeys returns the keys of the map attribute name inside body.
func alloyMapKeys(t *testing.T, body, name string) []string {
	t.Helper()
	m := regexp.MustCompile(name + `\s*=\s*\{([^}]*)\}`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s = { ... } in %q", name, body)
	}
	var keys []string
	for _, k := range alloyKeyRE.FindAllStringSubmatch(m[1], -1) {
		keys = append(keys, k[1])
	}
	slices.Sort(keys)
	return keys
}

// alloyURLs returns the http(s) URLs that config.alloy sends to.
func alloyURLs(t *testing.T) []string {
	t.Helper()
	urls := regexp.MustCompile(`"(https?://[^"]+)"`).FindAllStringSubmatch(alloySource(t), -1)
	var out []string
	for _, u := range urls {
		out = append(out, u[1])
	}
	if len(out) == 0 {
		t.Fatalf("%s sends to no URL", alloyConfig)
	}
	return out
}

// TestAlloyConfig checks the log pipeline: every component referenced is
// defined; the JSON stage extracts slog's and watermillobs' fields; only
// bounded values become labels (IDs would make a stream each); the files
// read are where compose mounts deploy/logs; the logs go to Loki's push API.
func TestAlloyConfig(t *testing.T) {
	src := alloySource(t)
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z_]+(?:\.[a-z_]+)+)\s+"([^"]+)"\s*\{`).FindAllStringSubmatch(src, -1) {
		defined[m[1]+"."+m[2]] = true
	}
	if len(defined) == 0 {
		t.Fatalf("%s defines no component", alloyConfig)
	}
	refs := regexp.MustCompile(`=\s*\[?\s*((?:local|loki|discovery)\.[a-z_.]+)\.(receiver|targets)\b`).FindAllStringSubmatch(src, -1)
	if len(refs) == 0 {
		t.Fatalf("%s connects no component", alloyConfig)
	}
	for _, r := range refs {
		if !defined[r[1]] {
			t.Errorf("%s refers to %s.%s, but %s is not defined (defined: %v)", alloyConfig, r[1], r[2], r[1], slices.Sorted(maps.Keys(defined)))
		}
	}
	for _, c := range []string{"loki.source.file", "loki.process", "loki.write"} {
		found := false
		for d := range defined {
			found = found || strings.HasPrefix(d, c+".")
		}
		if !found {
			t.Errorf("%s has no %s component", alloyConfig, c)
		}
	}

	fields := alloyMapKeys(t, alloyBlock(src, "stage.json"), "expressions")
	for _, f := range []string{"time", "level", "msg", "kind", "message_type", "outcome", "correlation_id", "trace_id", "span_id", "handler", "topic"} {
		if !slices.Contains(fields, f) {
			t.Errorf("stage.json does not extract %s: %v", f, fields)
		}
	}
	if labels := alloyMapKeys(t, alloyBlock(src, "stage.labels"), "values"); !slices.Equal(labels, []string{"kind", "level", "outcome"}) {
		t.Errorf("stage.labels makes labels of %v, want only the bounded kind, level and outcome", labels)
	}
	if ts := alloyBlock(src, "stage.timestamp"); !strings.Contains(ts, `source = "time"`) {
		t.Errorf("stage.timestamp does not use slog's time field: %q", ts)
	}

	m := regexp.MustCompile(`"__path__"\s*=\s*"([^"]+)"`).FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("%s reads no file (__path__)", alloyConfig)
	}
	mounted := mountTarget(composeServices(t)["alloy"], "./logs")
	if mounted == "" || path.Dir(m[1]) != mounted {
		t.Errorf("Alloy reads %s, but compose mounts deploy/logs on %q", m[1], mounted)
	}
	for _, u := range alloyURLs(t) {
		if !strings.HasSuffix(u, "/loki/api/v1/push") {
			t.Errorf("Alloy sends to %s, not Loki's push API", u)
		}
	}
}
