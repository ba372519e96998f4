package payloadtrace_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
)

// payloadCanary is a secret the fuzz target puts under sensitive keys only.
// Its letters cannot come out of a number literal, a hex digest or a marker.
const payloadCanary = "Cz9QvXhunter2Kw"

// payloadFuzzConfig derives a configuration from the fuzzer's inputs, so
// that the allowlist, hashing and redaction paths are all explored.
func payloadFuzzConfig(max uint16, mode uint8) payloadtrace.Tracing {
	p := payloadtrace.Tracing{MaxPayloadChars: int(max)}
	switch mode % 5 {
	case 1:
		p.IncludeFields = []string{"password", "nested", "data", "id", "a"}
	case 2:
		p.HashFields = []string{"data", "id"}
		p.HMACKey = []byte("k")
	case 3:
		p.RedactFields = []string{"data"}
	case 4:
		p.DisableDefaultRedaction = true
		p.RedactFields = []string{"password", "apiKey"}
	}
	return p
}

// FuzzPayloadSanitize checks, for any payload, that payload tracing never
// panics or fails the message, that the recorded payload is valid UTF-8
// within the cap (and valid JSON unless cut), that a non-JSON payload is
// never copied, and that a value under a sensitive key never reaches the
// span.
func FuzzPayloadSanitize(f *testing.F) {
	for _, seed := range []struct {
		payload string
		max     uint16
		mode    uint8
	}{
		{`{"password":"hunter2","order_id":"o-1"}`, 0, 0},
		{`{"a":[{"token":"t","id":1},{"b":{"c":1.50}}],"id":"x"}`, 20, 1},
		{`[1,"two",{"data":{"k":[null,true]}}]`, 0, 2},
		{"{\"k\xff\":\"\xf0\x9f\x98\x80€\"}", 9, 3},
		{`not json`, 0, 4},
		{strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), 0, 1},
	} {
		f.Add([]byte(seed.payload), seed.max, seed.mode)
	}
	f.Fuzz(func(t *testing.T, payload []byte, max uint16, mode uint8) {
		p := payloadFuzzConfig(max, mode)
		limit := p.MaxPayloadChars
		if limit <= 0 {
			limit = 4096
		}
		s := payloadTrace(t, p, payload)
		got, ok := payloadEvent(t, s)
		if ok != (len(payload) > 0) {
			t.Fatalf("payload event present = %v for a %d-byte payload", ok, len(payload))
		}
		if len(got) > limit || !utf8.ValidString(got) {
			t.Fatalf("payload %q: %d bytes (cap %d), valid UTF-8 %v", got, len(got), limit, utf8.ValidString(got))
		}
		if !json.Valid(payload) {
			if ok && !strings.HasPrefix("[non-JSON payload omitted]", strings.TrimSuffix(got, "…")) {
				t.Fatalf("non-JSON payload %q recorded as %q", payload, got)
			}
			return
		}
		if !payloadAttrs(s)["cqrs.payload_truncated"].AsBool() && !json.Valid([]byte(got)) {
			t.Fatalf("untruncated payload %q is not valid JSON", got)
		}

		// The same payload next to secrets under sensitive keys: the secret
		// must not come out, unless the payload itself carries it.
		wrapped := []byte(`{"password":"` + payloadCanary + `","nested":{"API-Key":["` + payloadCanary +
			`"],"id":1},"data":` + string(payload) + `}`)
		if !json.Valid(wrapped) { // nested too deep for encoding/json
			return
		}
		p.MaxPayloadChars = 1 << 20
		text := payloadSpanText(payloadTrace(t, p, wrapped))
		if strings.Contains(text, payloadCanary) && !payloadDecodedContains(t, payload, payloadCanary) {
			t.Fatalf("secret under a sensitive key reached the span: %s", text)
		}
	})
}

// payloadDecodedContains reports whether s may appear in the decoded keys
// and strings of a JSON payload. It over-reports (formatting joins values),
// which only makes the caller skip a check.
func payloadDecodedContains(t *testing.T, payload []byte, s string) bool {
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		t.Fatalf("cannot decode a valid payload: %v", err)
	}
	return strings.Contains(fmt.Sprint(v), s)
}
