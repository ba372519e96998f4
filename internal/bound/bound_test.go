package bound_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short valid", "orders", 10, "orders"},
		{"exact", "abc", 3, "abc"},
		{"truncated", "abcdefgh", 6, "abc" + bound.Truncated},
		{"invalid utf8", "a\xffb", 10, "a\uFFFDb"},
		{"cut at rune boundary", "ééééé", 8, "éé" + bound.Truncated},
		{"zero", "abc", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bound.String(tt.in, tt.max); got != tt.want {
				t.Errorf("String(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func TestString_huge_value(t *testing.T) {
	in := strings.Repeat("\xff", 1<<20)
	got := bound.String(in, bound.Attribute)
	if len(got) > bound.Attribute || !utf8.ValidString(got) {
		t.Errorf("1 MiB of invalid bytes became %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func FuzzString(f *testing.F) {
	f.Add("orders", 10)
	f.Add("é\xffé", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got := bound.String(s, max)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("String(%q, %d) = %q: %d bytes, valid %v", s, max, got, len(got), utf8.ValidString(got))
		}
		if len(s) <= max && utf8.ValidString(s) && got != s {
			t.Fatalf("String changed a value within bounds: %q -> %q", s, got)
		}
	})
}

func TestIsID(t *testing.T) {
	for in, want := range map[string]bool{
		"7d0f3a52-0000-4000-8000-000000000001": true,
		"":                                     false,
		"has space":                            false,
		"nul\x00":                              false,
		"é":                                    false,
		strings.Repeat("a", bound.ID):          true,
		strings.Repeat("a", bound.ID+1):        false,
	} {
		if got := bound.IsID(in); got != want {
			t.Errorf("IsID(%q) = %v, want %v", in, got, want)
		}
	}
}

// isIDSimple is IsID written plainly, the reference for FuzzIsID.
func isIDSimple(s string) bool {
	if len(s) == 0 || len(s) > bound.ID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func TestIsID_every_byte_at_every_position(t *testing.T) {
	// Each byte value alone in an otherwise valid ID, at each position of
	// an eight-byte word and of the tail.
	for pos := range 19 {
		for c := range 256 {
			b := []byte(strings.Repeat("a", 19))
			b[pos] = byte(c)
			if got, want := bound.IsID(string(b)), isIDSimple(string(b)); got != want {
				t.Fatalf("IsID with byte %#x at %d = %v, want %v", c, pos, got, want)
			}
		}
	}
}

func FuzzIsID(f *testing.F) {
	f.Add("7d0f3a52-0000-4000-8000-000000000001")
	f.Add("abcdefg\x7f")
	f.Add("\x20abcdefgh")
	f.Add("~~~~~~~~!!!!!!!!")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := bound.IsID(s), isIDSimple(s); got != want {
			t.Fatalf("IsID(%q) = %v, want %v", s, got, want)
		}
	})
}

func BenchmarkIsID(b *testing.B) {
	for b.Loop() {
		bound.IsID("7d0f3a52-0000-4000-8000-000000000001")
	}
}
