package payloadtrace_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
)

// payloadTrace handles a message with payload through p's middleware inside
// a recording span and returns the ended span.
func payloadTrace(t testing.TB, p payloadtrace.Tracing, payload []byte) sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(context.Background(), "process orders")
	msg := message.NewMessage("msg-1", payload)
	msg.SetContext(ctx)
	called := false
	_, err := p.Middleware(func(*message.Message) ([]*message.Message, error) {
		called = true
		return nil, nil
	})(msg)
	span.End()
	if err != nil || !called {
		t.Fatalf("handler called = %v, err = %v; want called, nil", called, err)
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("got %d ended spans, want 1", len(ended))
	}
	return ended[0]
}

// payloadEvent returns the "payload" attribute of the span's
// cqrs.command_payload event.
func payloadEvent(t testing.TB, s sdktrace.ReadOnlySpan) (string, bool) {
	t.Helper()
	found, payload := 0, ""
	for _, e := range s.Events() {
		if e.Name != "cqrs.command_payload" {
			continue
		}
		found++
		for _, kv := range e.Attributes {
			if kv.Key == "payload" {
				payload = kv.Value.AsString()
			}
		}
	}
	if found > 1 {
		t.Fatalf("%d payload events, want at most 1", found)
	}
	return payload, found == 1
}

// payloadAttrs returns the span's attributes by key.
func payloadAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// payloadSpanText is everything a span exports as text: attribute and event
// values.
func payloadSpanText(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, kv := range s.Attributes() {
		b.WriteString(kv.Value.String())
	}
	for _, e := range s.Events() {
		b.WriteString(e.Name)
		for _, kv := range e.Attributes {
			b.WriteString(kv.Value.String())
		}
	}
	return b.String()
}

func TestPayloadTracing_sanitize(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	deepWant := strings.Repeat(`{"a":`, 32) + `"[MAX DEPTH]"` + strings.Repeat("}", 32)
	tests := []struct {
		name    string
		p       payloadtrace.Tracing
		payload string
		want    string
	}{
		{
			name:    "default sensitive keys redacted at every level",
			payload: `{"order_id":"o-1","password":"hunter2","customer":{"Email":"a@b.c","name":"Ann"},"items":[{"sku":"s-1","card_number":"4111"}]}`,
			want:    `{"order_id":"o-1","password":"[REDACTED]","customer":{"Email":"[REDACTED]","name":"Ann"},"items":[{"sku":"s-1","card_number":"[REDACTED]"}]}`,
		},
		{
			name:    "keys match ignoring case, underscores and dashes",
			payload: `{"API_KEY":"k","apiKey":"k","Access-Token":"t","cardNumber":"4","PassWord":"p","tokenCount":3}`,
			want:    `{"API_KEY":"[REDACTED]","apiKey":"[REDACTED]","Access-Token":"[REDACTED]","cardNumber":"[REDACTED]","PassWord":"[REDACTED]","tokenCount":3}`,
		},
		{
			name:    "a redacted container is redacted whole",
			payload: `{"secret":{"a":[1,{"b":2}]},"x":1}`,
			want:    `{"secret":"[REDACTED]","x":1}`,
		},
		{
			name:    "extra redact fields at several levels",
			p:       payloadtrace.Tracing{RedactFields: []string{"address"}},
			payload: `{"address":"x","shipping":{"Address":{"street":"s"}},"list":[{"address":"y","n":1}],"password":"p"}`,
			want:    `{"address":"[REDACTED]","shipping":{"Address":"[REDACTED]"},"list":[{"address":"[REDACTED]","n":1}],"password":"[REDACTED]"}`,
		},
		{
			name:    "default redaction disabled",
			p:       payloadtrace.Tracing{DisableDefaultRedaction: true, RedactFields: []string{"name"}},
			payload: `{"password":"p","name":"Ann"}`,
			want:    `{"password":"p","name":"[REDACTED]"}`,
		},
		{
			name:    "hash of a string is the SHA-256 of the string",
			p:       payloadtrace.Tracing{HashFields: []string{"customer_id"}},
			payload: `{"customer_id":"c-42","n":1}`,
			want:    `{"customer_id":"sha256:8fb7893be928286e8d0617fa09ec51245e34b241ab02c9ad75356bf303a45053","n":1}`,
		},
		{
			name:    "hash of an escaped string is the SHA-256 of its value",
			p:       payloadtrace.Tracing{HashFields: []string{"customer_id"}},
			payload: `{"customer_id" : "c\u002d42","n":1}`,
			want:    `{"customer_id":"sha256:8fb7893be928286e8d0617fa09ec51245e34b241ab02c9ad75356bf303a45053","n":1}`,
		},
		{
			name:    "hash of a number is the SHA-256 of its text",
			p:       payloadtrace.Tracing{HashFields: []string{"customer_id"}},
			payload: `{"customer_id":42}`,
			want:    `{"customer_id":"sha256:73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049"}`,
		},
		{
			name:    "hash of an object is the SHA-256 of its compact JSON",
			p:       payloadtrace.Tracing{HashFields: []string{"customer_id"}},
			payload: `{"customer_id": { "a" : 1, "b" : [ true, null ] } }`,
			want:    `{"customer_id":"sha256:1cc69c7fa23616ca2ec3ee70d24390a6225c8832db8a4c814c7e0e7f942f8668"}`,
		},
		{
			name:    "HMAC key makes keyed digests",
			p:       payloadtrace.Tracing{HashFields: []string{"customer_id"}, HMACKey: []byte("k3y")},
			payload: `{"customer_id":"c-42"}`,
			want:    `{"customer_id":"hmac-sha256:4e8623293ec01de8cb0e16b2a78102c21d3787fb7022adc8456052dd8caa11a3"}`,
		},
		{
			name:    "hash in arrays of objects, any spelling",
			p:       payloadtrace.Tracing{HashFields: []string{"customerId"}},
			payload: `{"orders":[{"Customer_ID":"c-42"},{"id":2}]}`,
			want:    `{"orders":[{"Customer_ID":"sha256:8fb7893be928286e8d0617fa09ec51245e34b241ab02c9ad75356bf303a45053"},{"id":2}]}`,
		},
		{
			name:    "redaction wins over hashing",
			p:       payloadtrace.Tracing{HashFields: []string{"customer_id"}, RedactFields: []string{"customer_id"}},
			payload: `{"customer_id":"c-42"}`,
			want:    `{"customer_id":"[REDACTED]"}`,
		},
		{
			name:    "allowlist keeps listed keys at any level with their path",
			p:       payloadtrace.Tracing{IncludeFields: []string{"order_id", "SKU"}},
			payload: `{"order_id":"o-1","note":"n","customer":{"name":"Ann","tier":{"level":3}},"items":[{"sku":"s-1","price":10},{"price":5},{"sku":"s-2"}],"tags":["a","b"]}`,
			want:    `{"order_id":"o-1","items":[{"sku":"s-1"},{"sku":"s-2"}]}`,
		},
		{
			name:    "a listed container keeps its subtree, sanitized",
			p:       payloadtrace.Tracing{IncludeFields: []string{"customer"}},
			payload: `{"customer":{"name":"Ann","email":"a@b.c","cards":[{"cvv":"123","last4":"1111"}]},"other":1}`,
			want:    `{"customer":{"name":"Ann","email":"[REDACTED]","cards":[{"cvv":"[REDACTED]","last4":"1111"}]}}`,
		},
		{
			name:    "listed sensitive keys stay redacted",
			p:       payloadtrace.Tracing{IncludeFields: []string{"password", "order_id"}},
			payload: `{"password":"hunter2","order_id":"o-1"}`,
			want:    `{"password":"[REDACTED]","order_id":"o-1"}`,
		},
		{
			name:    "unlisted hashed and redacted keys are dropped",
			p:       payloadtrace.Tracing{IncludeFields: []string{"order_id"}, HashFields: []string{"customer_id"}},
			payload: `{"order_id":"o-1","customer_id":"c-42","token":"t"}`,
			want:    `{"order_id":"o-1"}`,
		},
		{
			name:    "listed hashed keys are hashed",
			p:       payloadtrace.Tracing{IncludeFields: []string{"customer_id"}, HashFields: []string{"customer_id"}},
			payload: `{"order_id":"o-1","nested":{"customer_id":"c-42"}}`,
			want:    `{"nested":{"customer_id":"sha256:8fb7893be928286e8d0617fa09ec51245e34b241ab02c9ad75356bf303a45053"}}`,
		},
		{
			name:    "nothing listed leaves an empty object",
			p:       payloadtrace.Tracing{IncludeFields: []string{"x"}},
			payload: `{"a":{"b":[1,{"c":2}]},"d":null}`,
			want:    `{}`,
		},
		{
			name:    "nothing listed in a top-level array",
			p:       payloadtrace.Tracing{IncludeFields: []string{"x"}},
			payload: `[{"a":1},2]`,
			want:    `[]`,
		},
		{
			name:    "a top-level scalar under an allowlist",
			p:       payloadtrace.Tracing{IncludeFields: []string{"x"}},
			payload: `"my secret"`,
			want:    `null`,
		},
		{
			name:    "a top-level scalar without allowlist",
			payload: ` 42 `,
			want:    `42`,
		},
		{
			name:    "top-level array of objects",
			payload: `[{"token":"t"},{"id":1},[true,false,null]]`,
			want:    `[{"token":"[REDACTED]"},{"id":1},[true,false,null]]`,
		},
		{
			name:    "numbers keep their text",
			payload: `{"big":12345678901234567890123,"price":1.50,"exp":1e3,"neg":-0.0}`,
			want:    `{"big":12345678901234567890123,"price":1.50,"exp":1e3,"neg":-0.0}`,
		},
		{
			name:    "whitespace is dropped and order kept",
			payload: "{ \"b\" : 1 ,\n \"a\" : [ 1 , 2 ] , \"\" : {} , \"e\" : [] }",
			want:    `{"b":1,"a":[1,2],"":{},"e":[]}`,
		},
		{
			name:    "escaped keys match as decoded",
			payload: `{"pass\u0077ord":"p","E\u006dail" : "e","to\"ken":"t","\u00e9":"\u00e9"}`,
			want:    `{"password":"[REDACTED]","Email":"[REDACTED]","to\"ken":"t","é":"é"}`,
		},
		{
			name:    "duplicate keys are kept",
			payload: `{"a":1,"a":2}`,
			want:    `{"a":1,"a":2}`,
		},
		{
			name:    "strings are escaped again",
			payload: `{"s":"line\nbreak \"q\" \\ \u00e9 \u0001 <tag> \ud83d\ude00"}`,
			want:    `{"s":"line\nbreak \"q\" \\ é \u0001 <tag> 😀"}`,
		},
		{
			name:    "invalid UTF-8 inside strings and keys is replaced",
			payload: "{\"k\xff\":\"a\xffb\"}",
			want:    "{\"k\uFFFD\":\"a\uFFFDb\"}",
		},
		{
			name:    "nesting deeper than 32 levels is cut",
			payload: deep,
			want:    deepWant,
		},
		{
			name:    "deep nesting outside listed keys is dropped",
			p:       payloadtrace.Tracing{IncludeFields: []string{"z"}},
			payload: deep,
			want:    `{}`,
		},
		{
			name:    "deep nesting under a listed key is marked",
			p:       payloadtrace.Tracing{IncludeFields: []string{"a"}},
			payload: deep,
			want:    deepWant,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := payloadTrace(t, tt.p, []byte(tt.payload))
			got, ok := payloadEvent(t, s)
			if !ok {
				t.Fatal("no cqrs.command_payload event")
			}
			if got != tt.want {
				t.Errorf("payload\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("payload %s is not valid JSON", got)
			}
			if a := payloadAttrs(s)["cqrs.payload_truncated"]; a.AsBool() {
				t.Error("cqrs.payload_truncated = true, want false")
			}
		})
	}
}

func TestPayloadTracing_attributes(t *testing.T) {
	tests := []struct {
		name        string
		payload     []byte
		wantPresent bool
		wantEvent   bool
	}{
		{name: "JSON", payload: []byte(`{"order_id":"o-1"}`), wantPresent: true, wantEvent: true},
		{name: "not JSON", payload: []byte("order o-1"), wantPresent: true, wantEvent: true},
		{name: "empty", payload: nil, wantPresent: false, wantEvent: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := payloadTrace(t, payloadtrace.Tracing{}, tt.payload)
			attrs := payloadAttrs(s)
			if v, ok := attrs["cqrs.payload_present"]; !ok || v.Type() != attribute.BOOL || v.AsBool() != tt.wantPresent {
				t.Errorf("cqrs.payload_present = %v (set %v), want %v", v.String(), ok, tt.wantPresent)
			}
			if v, ok := attrs["cqrs.payload_truncated"]; !ok || v.Type() != attribute.BOOL || v.AsBool() {
				t.Errorf("cqrs.payload_truncated = %v (set %v), want false", v.String(), ok)
			}
			if v, ok := attrs["cqrs.payload_size"]; !ok || v.Type() != attribute.INT64 || v.AsInt64() != int64(len(tt.payload)) {
				t.Errorf("cqrs.payload_size = %v (set %v), want %d", v.String(), ok, len(tt.payload))
			}
			if _, ok := payloadEvent(t, s); ok != tt.wantEvent {
				t.Errorf("payload event present = %v, want %v", ok, tt.wantEvent)
			}
		})
	}
}

func TestPayloadTracing_truncation(t *testing.T) {
	payload := []byte(`{"items":[{"name":"€uro ☃ snow","sku":"s-1"},{"name":"ünïcödé","sku":"s-2"}],"note":"` + strings.Repeat("ab€", 30) + `"}`)
	full, _ := payloadEvent(t, payloadTrace(t, payloadtrace.Tracing{MaxPayloadChars: 1 << 20}, payload))
	for _, max := range []int{1, 2, 3, 4, 5, 10, 17, 18, 19, 20, 64, len(full) - 1} {
		s := payloadTrace(t, payloadtrace.Tracing{MaxPayloadChars: max}, payload)
		got, _ := payloadEvent(t, s)
		if len(got) > max {
			t.Errorf("max %d: payload is %d bytes: %q", max, len(got), got)
		}
		if !utf8.ValidString(got) {
			t.Errorf("max %d: payload is not valid UTF-8: %q", max, got)
		}
		if max >= 3 && !strings.HasSuffix(got, "…") {
			t.Errorf("max %d: payload %q does not end with the truncation marker", max, got)
		}
		if !strings.HasPrefix(full, strings.TrimSuffix(got, "…")) {
			t.Errorf("max %d: payload %q is not a prefix of %q", max, got, full)
		}
		if max >= 10 && len(got) < max-6 {
			t.Errorf("max %d: payload %q wastes more than a character of room", max, got)
		}
		if a := payloadAttrs(s)["cqrs.payload_truncated"]; !a.AsBool() {
			t.Errorf("max %d: cqrs.payload_truncated = false, want true", max)
		}
	}

	t.Run("output of exactly the cap is not truncated", func(t *testing.T) {
		s := payloadTrace(t, payloadtrace.Tracing{MaxPayloadChars: len(full)}, payload)
		got, _ := payloadEvent(t, s)
		if got != full {
			t.Errorf("payload = %q, want %q", got, full)
		}
		if a := payloadAttrs(s)["cqrs.payload_truncated"]; a.AsBool() {
			t.Error("cqrs.payload_truncated = true, want false")
		}
	})
}

func TestPayloadTracing_largePayloads(t *testing.T) {
	var list bytes.Buffer
	list.WriteString(`{"items":[`)
	for i := 0; list.Len() < 1<<20; i++ {
		if i > 0 {
			list.WriteByte(',')
		}
		list.WriteString(`{"sku":"s-1","qty":1,"password":"hunter2"}`)
	}
	list.WriteString(`]}`)
	tests := []struct {
		name    string
		p       payloadtrace.Tracing
		payload []byte
		want    string // prefix
	}{
		{name: "many members", payload: list.Bytes(), want: `{"items":[{"sku":"s-1","qty":1,"password":"[REDACTED]"},`},
		{name: "one long string", payload: []byte(`{"note":"` + strings.Repeat("é", 1<<19) + `"}`), want: `{"note":"éé`},
		{name: "allowlist over many members", p: payloadtrace.Tracing{IncludeFields: []string{"qty"}}, payload: list.Bytes(), want: `{"items":[{"qty":1},{"qty":1},`},
		{name: "hashed large value", p: payloadtrace.Tracing{HashFields: []string{"items"}}, payload: list.Bytes(), want: `{"items":"sha256:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := payloadTrace(t, tt.p, tt.payload)
			got, _ := payloadEvent(t, s)
			if len(got) > 4096 {
				t.Errorf("payload is %d bytes, want at most the default 4096", len(got))
			}
			if !strings.HasPrefix(got, tt.want) || !utf8.ValidString(got) {
				t.Errorf("payload %.100q... does not start with %q or is not valid UTF-8", got, tt.want)
			}
			if a := payloadAttrs(s)["cqrs.payload_size"]; a.AsInt64() != int64(len(tt.payload)) {
				t.Errorf("cqrs.payload_size = %d, want %d", a.AsInt64(), len(tt.payload))
			}
			if strings.Contains(payloadSpanText(s), "hunter2") {
				t.Error("a redacted value reached the span")
			}
		})
	}
}

func TestPayloadTracing_nonJSON(t *testing.T) {
	tests := []struct {
		name    string
		payload string
	}{
		{name: "text", payload: "password=hunter2"},
		{name: "unterminated JSON", payload: `{"note":"hunter2"`},
		{name: "trailing data", payload: `{"a":1} {"note":"hunter2"}`},
		{name: "invalid UTF-8", payload: "\xff\xfe hunter2 \xc3"},
		{name: "binary", payload: "\x00\x01hunter2\x00"},
		{name: "only whitespace", payload: " \n\t"},
		{name: "too deep for encoding/json", payload: strings.Repeat("[", 10001) + `"hunter2"` + strings.Repeat("]", 10001)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := payloadTrace(t, payloadtrace.Tracing{}, []byte(tt.payload))
			got, ok := payloadEvent(t, s)
			if !ok || got != "[non-JSON payload omitted]" {
				t.Errorf("payload event = %q (present %v), want the omission marker", got, ok)
			}
			attrs := payloadAttrs(s)
			if !attrs["cqrs.payload_present"].AsBool() || attrs["cqrs.payload_size"].AsInt64() != int64(len(tt.payload)) {
				t.Errorf("present = %v, size = %d; want true, %d",
					attrs["cqrs.payload_present"].AsBool(), attrs["cqrs.payload_size"].AsInt64(), len(tt.payload))
			}
			if text := payloadSpanText(s); strings.Contains(text, "hunter2") || !utf8.ValidString(text) {
				t.Errorf("raw payload bytes reached the span: %q", text)
			}
		})
	}
}

func TestAllocs_payload_tracing_per_payload_not_per_token(t *testing.T) {
	// The walk allocates per payload (the output), never per token: a
	// payload of 400 members costs the allocations of one of 4.
	if raceEnabled {
		t.Skip("the race detector allocates; make test runs this pin without -race")
	}
	tp := sdktrace.NewTracerProvider()
	h := payloadtrace.Tracing{MaxPayloadChars: 1 << 20}.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	allocs := func(items int) float64 {
		var b strings.Builder
		b.WriteString(`{"order_id":"o-1","password":"p","items":[`)
		for i := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"sku":"s-1","qty":2,"price":10.5,"gift":false}`)
		}
		b.WriteString(`]}`)
		msg := message.NewMessage("msg-1", []byte(b.String()))
		return testing.AllocsPerRun(50, func() {
			ctx, span := tp.Tracer("test").Start(context.Background(), "process")
			msg.SetContext(ctx)
			_, _ = h(msg)
			span.End()
		})
	}
	if few, many := allocs(1), allocs(100); many != few {
		t.Errorf("%v allocations per message for 100 items, %v for 1: want the same", many, few)
	}
}

func TestAllocs_payload_tracing_without_recording_span(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	sampledOut, span := tp.Tracer("test").Start(context.Background(), "process")
	defer span.End()
	if span.IsRecording() {
		t.Fatal("span is recording; the test needs one that is not")
	}
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{name: "no span", ctx: context.Background()},
		{name: "span not recording", ctx: sampledOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := []byte(`{"password":"hunter2","n":1}`)
			msg := message.NewMessage("msg-1", payload)
			msg.SetContext(tt.ctx)
			calls := 0
			h := payloadtrace.Tracing{}.Middleware(func(m *message.Message) ([]*message.Message, error) {
				calls++
				return nil, nil
			})
			if _, err := h(msg); err != nil || calls != 1 {
				t.Fatalf("handler calls = %d, err = %v; want 1, nil", calls, err)
			}
			if !bytes.Equal(msg.Payload, payload) {
				t.Errorf("payload changed to %q", msg.Payload)
			}
			// The gate comes before any work: not one allocation.
			if allocs := testing.AllocsPerRun(100, func() { _, _ = h(msg) }); allocs != 0 {
				t.Errorf("%v allocations per message, want 0", allocs)
			}
		})
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded, want 0", n)
	}
}

func TestPayloadTracing_handlerResults(t *testing.T) {
	produced := []*message.Message{message.NewMessage("out-1", nil)}
	errHandler := errors.New("handler failed")
	tests := []struct {
		name    string
		out     []*message.Message
		err     error
		payload string
	}{
		{name: "messages", out: produced, payload: `{"a":1}`},
		{name: "error", err: errHandler, payload: `{"a":1}`},
		{name: "messages and error with a non-JSON payload", out: produced, err: errHandler, payload: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			ctx, span := tp.Tracer("test").Start(context.Background(), "process")
			msg := message.NewMessage("msg-1", []byte(tt.payload))
			msg.SetContext(ctx)
			out, err := payloadtrace.Tracing{}.Middleware(func(m *message.Message) ([]*message.Message, error) {
				if m != msg {
					t.Error("handler got another message")
				}
				return tt.out, tt.err
			})(msg)
			span.End()
			if err != tt.err {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			if len(out) != len(tt.out) || (len(out) > 0 && out[0] != tt.out[0]) {
				t.Errorf("out = %v, want %v", out, tt.out)
			}
		})
	}
}

func TestPayloadTracing_handlerPanic(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(context.Background(), "process")
	msg := message.NewMessage("msg-1", []byte(`{"a":1}`))
	msg.SetContext(ctx)
	boom := errors.New("boom")
	func() {
		defer func() {
			if r := recover(); r != boom {
				t.Errorf("recovered %v, want the handler's panic value", r)
			}
		}()
		_, _ = payloadtrace.Tracing{}.Middleware(func(*message.Message) ([]*message.Message, error) {
			panic(boom)
		})(msg)
	}()
	span.End()
	if got, _ := payloadEvent(t, rec.Ended()[0]); got != `{"a":1}` {
		t.Errorf("payload event = %q, want it recorded before the handler ran", got)
	}
}

// payloadPanickingSpan is a recording span whose AddEvent panics, standing
// in for a broken exporter or SDK.
type payloadPanickingSpan struct{ trace.Span }

func (payloadPanickingSpan) AddEvent(string, ...trace.EventOption) { panic("span broken") }

func TestPayloadTracing_ownPanicRecovered(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(context.Background(), "process")
	defer span.End()
	msg := message.NewMessage("msg-1", []byte(`{"a":1}`))
	msg.SetContext(trace.ContextWithSpan(ctx, payloadPanickingSpan{span}))
	var logs bytes.Buffer
	p := payloadtrace.Tracing{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	wantErr := errors.New("handler error")
	_, err := p.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, wantErr })(msg)
	if err != wantErr {
		t.Errorf("err = %v, want the handler's error", err)
	}
	var rec0 map[string]any
	if err := json.Unmarshal(logs.Bytes(), &rec0); err != nil {
		t.Fatalf("log output %q: %v", logs.String(), err)
	}
	if rec0["level"] != "ERROR" || rec0["panic"] != "span broken" {
		t.Errorf("log record = %v, want an ERROR record with panic=span broken", rec0)
	}
}

func BenchmarkPayloadTracing(b *testing.B) {
	payload := []byte(`{"order_id":"o-1","customer_id":"c-42","email":"a@b.c","items":[{"sku":"s-1","qty":2,"price":10.5},{"sku":"s-2","qty":1,"price":3}]}`)
	next := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler
		h       message.HandlerFunc
	}{
		{name: "without middleware", sampler: sdktrace.AlwaysSample(), h: next},
		{name: "span not recording", sampler: sdktrace.NeverSample(), h: payloadtrace.Tracing{}.Middleware(next)},
		{name: "redaction", sampler: sdktrace.AlwaysSample(), h: payloadtrace.Tracing{}.Middleware(next)},
		{name: "allowlist and hash", sampler: sdktrace.AlwaysSample(), h: payloadtrace.Tracing{
			IncludeFields: []string{"order_id", "sku", "customer_id"}, HashFields: []string{"customer_id"},
		}.Middleware(next)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(bc.sampler), sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
			ctx, span := tp.Tracer("bench").Start(context.Background(), "process")
			defer span.End()
			msg := message.NewMessage("msg-1", payload)
			msg.SetContext(ctx)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = bc.h(msg)
			}
		})
	}
}
