// Package bound keeps untrusted strings (message metadata, payloads, error
// messages) within a size and valid UTF-8 before they reach a span
// attribute, a log field or a metric label.
package bound

import (
	"strings"
	"unicode/utf8"
)

// Default limits shared by the backends.
const (
	// Attribute is the limit for span attributes and log fields taken from
	// metadata.
	Attribute = 256
	// Label is the limit for a Prometheus label value.
	Label = 128
	// Error is the limit for error messages in span status and logs.
	Error = 1024
	// ID is the longest correlation or causation ID accepted from metadata;
	// longer values are treated as absent.
	ID = 128
)

// Truncated marks a value that String shortened.
const Truncated = "…"

// String returns s if it is valid UTF-8 of at most max bytes. Otherwise it
// replaces invalid bytes with U+FFFD and cuts the result at a character
// boundary so that, with the [Truncated] marker, it fits in max bytes.
func String(s string, max int) string {
	if len(s) <= max && utf8.ValidString(s) {
		return s
	}
	if max <= 0 {
		return ""
	}
	if len(s) > 4*max+16 {
		// Only the head can survive; do not scan megabytes.
		s = s[:4*max+16]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len(Truncated)
	if cut < 0 {
		return Truncated[:0]
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Truncated
}

// IsID reports whether s is a plausible identifier: 1 to [ID] bytes of
// printable ASCII without spaces. Callers treat anything else as a missing
// ID instead of spreading it.
func IsID(s string) bool {
	if len(s) == 0 || len(s) > ID {
		return false
	}
	// Eight bytes at a time: IDs are checked a few times per message.
	for len(s) >= 8 {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		if !printable8(w) {
			return false
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// printable8 reports whether each byte of w is in '!'..'~'.
func printable8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// A byte with its high bit set is out. Once none has, subtracting 0x21
	// borrows out of (and adding 1 carries into the high bit of) exactly
	// the bytes below '!' (equal to 0x7f), and never across bytes.
	below := (w - 0x21*ones) & ^w
	del := w + ones
	return (w|below|del)&highs == 0
}
