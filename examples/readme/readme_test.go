package readme_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// region is a marked snippet of a compiled file.
type region struct {
	name, file string
	line       int // of the begin marker
	text       string
	used       bool
}

// block is a ```go block of README.md.
type block struct {
	line int // of the opening fence
	text string
}

// TestREADMESnippets fails when a Go block of README.md is not a compiled
// region of this package, or a region is no longer shown in README.md.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlocks(string(readme))
	regions := loadRegions(t)
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go block; the parser or README changed")
	}
	for _, b := range blocks {
		var match *region
		for _, r := range regions {
			if r.text == b.text {
				match = r
				break
			}
		}
		if match != nil {
			match.used = true
			continue
		}
		near, diff := nearest(b.text, regions)
		t.Errorf("README.md:%d: this ```go block is not a compiled snippet.\n"+
			"Nearest region: %q, examples/readme/%s:%d.\n%s\n"+
			"Edit the README block and that region (between its readme:begin and readme:end markers) to be identical, "+
			"or add a new region to examples/readme/snippets.go.",
			b.line, near.name, near.file, near.line, diff)
	}
	for _, r := range regions {
		if !r.used {
			t.Errorf("examples/readme/%s:%d: region %q is shown by no ```go block of README.md; delete it or fix README.md",
				r.file, r.line, r.name)
		}
	}
}

// goBlocks returns the ```go blocks of a Markdown text, dedented.
func goBlocks(md string) []block {
	var out []block
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		start := i + 1
		j := start
		for j < len(lines) && strings.TrimSpace(lines[j]) != "```" {
			j++
		}
		out = append(out, block{line: i + 1, text: dedent(lines[start:j])})
		i = j
	}
	return out
}

// loadRegions reads every marked region of the package's non-test files.
func loadRegions(t *testing.T) []*region {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []*region
	seen := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cur *region
		var body []string
		for i, l := range strings.Split(string(src), "\n") {
			trimmed := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(trimmed, "// readme:begin"):
				name := strings.TrimSpace(strings.TrimPrefix(trimmed, "// readme:begin"))
				if cur != nil {
					t.Fatalf("%s:%d: readme:begin inside region %q", f, i+1, cur.name)
				}
				if name == "" {
					t.Fatalf("%s:%d: readme:begin without a name", f, i+1)
				}
				if at, dup := seen[name]; dup {
					t.Fatalf("%s:%d: region %q already defined at %s", f, i+1, name, at)
				}
				seen[name] = fmt.Sprintf("%s:%d", f, i+1)
				cur, body = &region{name: name, file: f, line: i + 1}, nil
			case trimmed == "// readme:end":
				if cur == nil {
					t.Fatalf("%s:%d: readme:end without readme:begin", f, i+1)
				}
				cur.text = dedent(body)
				out = append(out, cur)
				cur = nil
			case cur != nil:
				body = append(body, l)
			}
		}
		if cur != nil {
			t.Fatalf("%s:%d: region %q has no readme:end", f, cur.line, cur.name)
		}
	}
	if len(out) == 0 {
		t.Fatal("no readme:begin regions found")
	}
	return out
}

// dedent removes the indentation common to all non-blank lines, trailing
// spaces and leading and trailing blank lines.
func dedent(lines []string) string {
	prefix := ""
	first := true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		ind := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first {
			prefix, first = ind, false
			continue
		}
		for !strings.HasPrefix(ind, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		l = strings.TrimRight(l, " \t")
		out = append(out, strings.TrimPrefix(l, prefix))
	}
	return strings.Trim(strings.Join(out, "\n"), "\n")
}

// nearest returns the region sharing the most lines with text, and where
// the two first differ.
func nearest(text string, regions []*region) (*region, string) {
	want := strings.Split(text, "\n")
	var best *region
	bestScore := -1
	for _, r := range regions {
		have := map[string]int{}
		for _, l := range strings.Split(r.text, "\n") {
			have[l]++
		}
		score := 0
		for _, l := range want {
			if have[l] > 0 {
				have[l]--
				score++
			}
		}
		if score > bestScore {
			best, bestScore = r, score
		}
	}
	got := strings.Split(best.text, "\n")
	for i := 0; i < len(want) || i < len(got); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			return best, fmt.Sprintf("First difference at line %d of the block:\n  README: %q\n  region: %q", i+1, w, g)
		}
	}
	return best, ""
}
