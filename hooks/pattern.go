package hooks

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrBadPattern reports a malformed operation pattern, such as an unclosed
// '[' or a trailing '\'.
var ErrBadPattern = errors.New("syntax error in pattern")

// pattern is a compiled operation glob. Common shapes ("*", "event.*",
// "*.commit", literals) skip the general matcher.
type pattern struct {
	raw  string
	kind patternKind
	lit  string
}

type patternKind uint8

const (
	matchGlob patternKind = iota
	matchAll
	matchLiteral
	matchPrefix
	matchSuffix
)

// compilePattern validates p and picks the cheapest matcher for it.
func compilePattern(p string) (pattern, error) {
	if err := validatePattern(p); err != nil {
		return pattern{}, fmt.Errorf("invalid operation pattern %q: %w", p, err)
	}
	c := pattern{raw: p, kind: matchGlob}
	switch {
	case p == "*":
		c.kind = matchAll
	case !strings.ContainsAny(p, `*?[\`):
		c.kind, c.lit = matchLiteral, p
	case strings.HasSuffix(p, "*") && !strings.ContainsAny(p[:len(p)-1], `*?[\`):
		c.kind, c.lit = matchPrefix, p[:len(p)-1]
	case strings.HasPrefix(p, "*") && !strings.ContainsAny(p[1:], `*?[\`):
		c.kind, c.lit = matchSuffix, p[1:]
	}
	return c, nil
}

func (p pattern) match(name string) bool {
	switch p.kind {
	case matchAll:
		return true
	case matchLiteral:
		return name == p.lit
	case matchPrefix:
		return strings.HasPrefix(name, p.lit)
	case matchSuffix:
		return strings.HasSuffix(name, p.lit)
	}
	return globMatch(p.raw, name)
}

// matchPrefix reports whether some name that starts with prefix could match.
func (p pattern) matchPrefix(prefix string) bool {
	switch p.kind {
	case matchAll:
		return true
	case matchLiteral:
		return strings.HasPrefix(p.lit, prefix)
	case matchPrefix:
		return strings.HasPrefix(p.lit, prefix) || strings.HasPrefix(prefix, p.lit)
	case matchSuffix:
		return true
	}
	return globPrefix(p.raw, prefix)
}

// MatchPattern reports whether name matches the operation pattern, with the
// syntax described in the package documentation. The only possible error is
// one wrapping [ErrBadPattern].
func MatchPattern(pattern, name string) (bool, error) {
	p, err := compilePattern(pattern)
	if err != nil {
		return false, err
	}
	return p.match(name), nil
}

// validatePattern checks the syntax once so that globMatch can trust it.
func validatePattern(p string) error {
	for i := 0; i < len(p); {
		switch p[i] {
		case '\\':
			if i+1 >= len(p) {
				return ErrBadPattern
			}
			i += 2
		case '[':
			n, ok := classLen(p[i:])
			if !ok {
				return ErrBadPattern
			}
			i += n
		default:
			i++
		}
	}
	return nil
}

// classLen returns the length of the character class at the start of p
// (p[0] == '[') including the closing ']', and whether it is well formed.
func classLen(p string) (int, bool) {
	i := 1
	if i < len(p) && (p[i] == '^' || p[i] == '!') {
		i++
	}
	for n := 0; ; n++ {
		if i >= len(p) {
			return 0, false
		}
		if p[i] == ']' && n > 0 {
			return i + 1, true
		}
		w, ok := classChar(p[i:])
		if !ok {
			return 0, false
		}
		i += w
		if i < len(p) && p[i] == '-' {
			w, ok := classChar(p[i+1:])
			if !ok {
				return 0, false
			}
			i += 1 + w
		}
	}
}

// classChar measures one (possibly escaped) range endpoint inside a class.
func classChar(p string) (int, bool) {
	if len(p) == 0 || p[0] == '-' || p[0] == ']' {
		return 0, false
	}
	esc := 0
	if p[0] == '\\' {
		if len(p) < 2 {
			return 0, false
		}
		esc = 1
	}
	// Invalid UTF-8 inside a class is an error, as in path.Match.
	r, w := utf8.DecodeRuneInString(p[esc:])
	if r == utf8.RuneError && w == 1 {
		return 0, false
	}
	return esc + w, true
}

// classRune decodes the range endpoint measured by classChar.
func classRune(p string) rune {
	if p[0] == '\\' {
		p = p[1:]
	}
	r, _ := utf8.DecodeRuneInString(p)
	return r
}

// matchClass reports whether r is in the well-formed class at the start of p.
func matchClass(p string, r rune) bool {
	i := 1
	negate := p[i] == '^' || p[i] == '!'
	if negate {
		i++
	}
	in := false
	for n := 0; ; n++ {
		if p[i] == ']' && n > 0 {
			break
		}
		w, _ := classChar(p[i:])
		lo := classRune(p[i:])
		hi := lo
		i += w
		if p[i] == '-' {
			w, _ := classChar(p[i+1:])
			hi = classRune(p[i+1:])
			i += 1 + w
		}
		if lo <= r && r <= hi {
			in = true
		}
	}
	return in != negate
}

// globPrefix reports whether some name starting with prefix could match the
// validated pattern: the matcher succeeds as soon as the prefix is used up.
// It may say true for a pattern whose remainder cannot match anything (an
// empty class), which only costs the caller a cache entry.
func globPrefix(p, prefix string) bool {
	px, nx := 0, 0
	star, starNx := -1, 0
	for nx < len(prefix) {
		if !utf8.FullRuneInString(prefix[nx:]) {
			// The prefix ends inside a character: any class could still match it.
			return true
		}
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				star, starNx = px, nx
				px++
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(prefix[nx:])
				px++
				nx += w
				continue
			case '[':
				r, w := utf8.DecodeRuneInString(prefix[nx:])
				if matchClass(p[px:], r) {
					n, _ := classLen(p[px:])
					px += n
					nx += w
					continue
				}
			default:
				lit, n := c, 1
				if c == '\\' {
					lit, n = p[px+1], 2
				}
				if prefix[nx] == lit {
					px += n
					nx++
					continue
				}
			}
		}
		if star >= 0 && starNx < len(prefix) {
			starNx++
			px, nx = star+1, starNx
			continue
		}
		return false
	}
	return true
}

// globMatch matches name against a validated pattern. '*' backtracks one
// byte at a time; '?' and classes consume one rune; literals compare bytes.
func globMatch(p, name string) bool {
	px, nx := 0, 0
	star, starNx := -1, 0
	for px < len(p) || nx < len(name) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				star, starNx = px, nx
				px++
				continue
			case '?':
				if nx < len(name) {
					_, w := utf8.DecodeRuneInString(name[nx:])
					px++
					nx += w
					continue
				}
			case '[':
				if nx < len(name) {
					r, w := utf8.DecodeRuneInString(name[nx:])
					if matchClass(p[px:], r) {
						n, _ := classLen(p[px:])
						px += n
						nx += w
						continue
					}
				}
			default:
				lit, n := c, 1
				if c == '\\' {
					lit, n = p[px+1], 2
				}
				if nx < len(name) && name[nx] == lit {
					px += n
					nx++
					continue
				}
			}
		}
		if star >= 0 && starNx < len(name) {
			starNx++
			px, nx = star+1, starNx
			continue
		}
		return false
	}
	return true
}
