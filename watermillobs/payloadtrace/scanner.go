package payloadtrace

import (
	"encoding/json"
	"unicode/utf8"
)

// jsonScanner reads the tokens of a JSON text that json.Valid accepted. It
// checks nothing, it only finds where each token ends, and it hands out
// substrings of the text: walking a payload allocates nothing per token,
// where encoding/json's Token boxes every token in an interface.
type jsonScanner struct {
	src string
	pos int
}

// peek skips white space and returns the byte that starts the next token.
func (s *jsonScanner) peek() byte {
	for ; s.pos < len(s.src); s.pos++ {
		switch c := s.src[s.pos]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// more reports whether the container being read has another member or
// element, and skips the comma before it.
func (s *jsonScanner) more() bool {
	switch s.peek() {
	case ']', '}':
		return false
	case ',':
		s.pos++
		s.peek()
	}
	return true
}

// str reads a string token and returns its value: for a string without
// escapes and of valid UTF-8 (the common case) a substring of the text,
// else the value encoding/json decodes.
func (s *jsonScanner) str() string {
	raw, escaped := s.rawStr()
	if inner := raw[1 : len(raw)-1]; !escaped && utf8.ValidString(inner) {
		return inner
	}
	return decodeJSONString(raw)
}

// rawStr reads a string token and returns it with its quotes, and whether
// it holds an escape.
func (s *jsonScanner) rawStr() (raw string, escaped bool) {
	s.peek()
	start := s.pos
	i := start + 1
	for s.src[i] != '"' {
		if s.src[i] == '\\' {
			escaped = true
			i++ // the escaped byte cannot end the string
		}
		i++
	}
	s.pos = i + 1
	return s.src[start:s.pos], escaped
}

// colon skips the colon after an object key.
func (s *jsonScanner) colon() {
	s.peek()
	s.pos++
}

// literal reads a number, true, false or null and returns its text.
func (s *jsonScanner) literal() string {
	start := s.pos
	for ; s.pos < len(s.src); s.pos++ {
		switch s.src[s.pos] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return s.src[start:s.pos]
		}
	}
	return s.src[start:]
}

// skipValue skips the next value and returns its text. It is iterative,
// so deep nesting costs no stack.
func (s *jsonScanner) skipValue() string {
	c := s.peek()
	start := s.pos
	switch c {
	case '"':
		s.rawStr()
	case '{', '[':
		for depth := 0; ; {
			switch s.src[s.pos] {
			case '"':
				s.rawStr()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.pos++
			if depth == 0 {
				break
			}
		}
	default:
		s.literal()
	}
	return s.src[start:s.pos]
}

// decodeJSONString decodes a valid JSON string token the way encoding/json
// does: escapes resolved, invalid UTF-8 and lone surrogates replaced by
// U+FFFD.
func decodeJSONString(raw string) string {
	var v string
	if json.Unmarshal([]byte(raw), &v) != nil {
		return "" // not a string token: cannot happen for validated input
	}
	return v
}
