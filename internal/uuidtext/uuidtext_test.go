package uuidtext

import (
	"regexp"
	"testing"
)

func TestFormat(t *testing.T) {
	var u [16]byte
	for i := range u {
		u[i] = byte(0xf0 + i%16)
	}
	got := Format(u, 5)
	if want := "f0f1f2f3-f4f5-56f7-b8f9-fafbfcfdfeff"; got != want {
		t.Errorf("Format = %s, want %s", got, want)
	}
	canonical := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if s := Format([16]byte{}, 4); !canonical.MatchString(s) {
		t.Errorf("Format(zero, 4) = %s, not a canonical version 4 UUID", s)
	}
}
