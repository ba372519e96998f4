package hooks

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// FuzzMatch checks the operation matcher against path.Match where their
// syntaxes overlap (no '/', which path.Match treats specially, and no "[!",
// our fnmatch extension), and checks that the matcher never panics, that
// validation and matching agree, and that the prefix matcher never rules out
// a name that matches.
func FuzzMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"event.*", "event.dispatch.OrderPlaced"},
		{"*.commit", "uow.commit"},
		{"*", ""},
		{"saga.[rt]un.*", "saga.run.OrderSaga"},
		{"lock.[!a]*", "lock.release"},
		{"lock.[^a-c]?", "lock.d1"},
		{`a\*b`, "a*b"},
		{"[", "["},
		{"a[]b", "a]b"},
		{"*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"?.é", "ü.é"},
		{"[é-ü]", "ö"},
		{"x\xff*", "x\xff\xfe"},
		{`[\]]`, "]"},
		{`\`, `\`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pat, name string) {
		got, err := MatchPattern(pat, name)
		if err != nil && !errors.Is(err, ErrBadPattern) {
			t.Fatalf("MatchPattern(%q, %q) error %v does not wrap ErrBadPattern", pat, name, err)
		}
		if err == nil && got {
			c, _ := compilePattern(pat)
			for i := 0; i <= len(name); i++ {
				if !c.matchPrefix(name[:i]) {
					t.Fatalf("pattern %q matches %q but matchPrefix(%q) = false", pat, name, name[:i])
				}
			}
		}
		if strings.Contains(pat, "/") || strings.Contains(name, "/") || strings.Contains(pat, "[!") {
			return
		}
		want, werr := path.Match(pat, name)
		if (err != nil) != (werr != nil) {
			t.Fatalf("pattern %q: our error %v, path.Match error %v", pat, err, werr)
		}
		if err == nil && got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, path.Match = %v", pat, name, got, want)
		}
	})
}
