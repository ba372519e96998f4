package watermillobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/getsentry/sentry-go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs"
)

const (
	hostileMiB = 1 << 20
	// hostileHugePayload is the size of the huge payload. Redis takes bulk
	// strings up to proto-max-bulk-len (512 MB by default) and
	// watermill-redisstream adds no limit of its own, so 8 MiB is an
	// ordinary message to both.
	hostileHugePayload = 8 << 20
	// hostileBadUTF8 holds a lone continuation byte, an invalid start
	// byte, an overlong NUL and an encoded surrogate.
	hostileBadUTF8 = "\xff\xfe\xc0\x80-not-utf8-\xed\xa0\x80"
	// hostileTraceparent is well formed: cases that pair it with a hostile
	// tracestate or baggage must still continue its trace.
	hostileTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hostileRemoteSpan  = "00f067aa0ba902b7"
	// hostileMaxMessageTypes is the promobs message_type cap of the test,
	// below the number of distinct types the cases make (two handler
	// names, a 1 MiB name and a non-UTF-8 one), so that the cap is hit.
	hostileMaxMessageTypes = 3
	// hostilePayload and hostilePayloadTraced are the payload of cases
	// about metadata and what payload tracing shows of it.
	hostilePayload       = `{"order_id":"o-1","tenant_id":"t-1","note":"not listed"}`
	hostilePayloadTraced = `{"order_id":"o-1","tenant_id":"t-1"}`
	hostileNonJSON       = "[non-JSON payload omitted]"
	// hostileForward returns the consumed message as it is, so that all
	// of its metadata goes out again through the router's decorated
	// publisher; hostileConsume ends the flow.
	hostileForward = "hostile_forward"
	hostileConsume = "hostile_consume"
)

// errHostileFirstDelivery fails the first delivery of every message to
// hostileConsume, so that each also takes the error path: an error log
// record, outcome="error" metrics and a Sentry event.
var errHostileFirstDelivery = errors.New("first delivery refused on purpose")

// hostileCase is one kind of hostile message.
type hostileCase struct {
	name     string
	metadata message.Metadata
	// payload is hostilePayload when nil.
	payload []byte
	// ignoredTraceparent: the metadata's traceparent must be ignored;
	// otherwise a traceparent in the metadata is hostileTraceparent and
	// must be continued.
	ignoredTraceparent bool
	// hostileCorrelation: the metadata's correlation_id is no ID and must
	// be treated as absent.
	hostileCorrelation bool
	// traced is the payload tracing event, "" for none.
	traced string
}

func hostileCases() []hostileCase {
	huge := strings.Repeat("x", hostileMiB)
	members := func(n int, sep string) string {
		m := make([]string, n)
		for i := range m {
			m[i] = fmt.Sprintf("k%d=v%d", i, i)
		}
		return strings.Join(m, sep)
	}
	manyKeys := make(message.Metadata, 10_000)
	for i := range 10_000 {
		manyKeys[fmt.Sprintf("key-%05d", i)] = "v"
	}
	nested := func(depth int, inner string) []byte {
		return []byte(`{"order_id":"o-1","n":` + strings.Repeat("[", depth) + inner + strings.Repeat("]", depth) + `}`)
	}
	hugeJSON := []byte(`{"order_id":"o-1","blob":"` + strings.Repeat("b", hostileHugePayload-30) + `"}`)
	tp := func(v string) message.Metadata { return message.Metadata{contract.TraceparentKey: v} }
	withTP := func(k, v string) message.Metadata {
		return message.Metadata{contract.TraceparentKey: hostileTraceparent, k: v}
	}
	md := func(k, v string) message.Metadata { return message.Metadata{k: v} }
	return []hostileCase{
		{name: "traceparent wrong version", metadata: tp("ff" + hostileTraceparent[2:]), ignoredTraceparent: true},
		{name: "traceparent short", metadata: tp("00-4bf92f35-00f067aa-01"), ignoredTraceparent: true},
		{name: "traceparent non-hex", metadata: tp("00-4bf92f3577b34da6a3ce929d0e0eXYZW-00f067aa0ba902b7-01"), ignoredTraceparent: true},
		{name: "traceparent all-zero trace ID", metadata: tp("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), ignoredTraceparent: true},
		// Version 01 may carry more fields, so only the size rejects it.
		{name: "traceparent 1 MiB", metadata: tp("01" + hostileTraceparent[2:] + "-" + huge), ignoredTraceparent: true},
		{name: "tracestate garbage", metadata: withTP(contract.TracestateKey, "==,\xff\x00,k=\"v\",,=")},
		{name: "tracestate 1 MiB", metadata: withTP(contract.TracestateKey, "k="+huge)},
		{name: "tracestate 10,000 members", metadata: withTP(contract.TracestateKey, members(10_000, ","))},
		{name: "baggage garbage", metadata: withTP(contract.BaggageKey, ";;=\xff,k=%zz,=v;p")},
		{name: "baggage 1 MiB", metadata: withTP(contract.BaggageKey, "k="+huge)},
		{name: "baggage 10,000 members", metadata: withTP(contract.BaggageKey, members(10_000, ","))},
		{name: "correlation_id 1 MiB", metadata: md(contract.CorrelationIDKey, huge), hostileCorrelation: true},
		{name: "causation_id 1 MiB", metadata: md(contract.CausationIDKey, huge)},
		{name: "name 1 MiB", metadata: md(contract.NameKey, huge)},
		{name: "message_kind 1 MiB", metadata: md(contract.MessageKindKey, huge)},
		{name: "published_at 1 MiB", metadata: md(contract.PublishedAtKey, huge)},
		{name: "arbitrary key 1 MiB", metadata: md("x-tenant", huge)},
		{name: "correlation_id non-UTF-8", metadata: md(contract.CorrelationIDKey, hostileBadUTF8), hostileCorrelation: true},
		{name: "causation_id non-UTF-8", metadata: md(contract.CausationIDKey, hostileBadUTF8)},
		{name: "name non-UTF-8", metadata: md(contract.NameKey, "Place"+hostileBadUTF8)},
		{name: "message_kind non-UTF-8", metadata: md(contract.MessageKindKey, hostileBadUTF8)},
		{name: "published_at non-UTF-8", metadata: md(contract.PublishedAtKey, "2026-01-01T00:00:00"+hostileBadUTF8+"Z")},
		{name: "arbitrary key non-UTF-8", metadata: md("x-tenant", hostileBadUTF8)},
		{name: "non-UTF-8 keys", metadata: message.Metadata{"\xff\xfe": "v", "name\xc0": "v", hostileBadUTF8: hostileBadUTF8}},
		{name: "10,000 metadata keys", metadata: manyKeys},
		{name: "empty payload", payload: []byte{}},
		{name: "huge payload (8 MiB JSON)", payload: hugeJSON, traced: `{"order_id":"o-1"}`},
		{name: "binary payload", payload: []byte("\x00\x01\xff\xfe{\"order_id\":\"o-1\"}\x00"), traced: hostileNonJSON},
		{name: "truncated JSON", payload: []byte(`{"order_id":"o-1","items":[1,2`), traced: hostileNonJSON},
		// encoding/json refuses more than 10,000 levels: not JSON to it.
		{name: "JSON nested 100,000 levels", payload: nested(100_000, ""), traced: hostileNonJSON},
		// Valid JSON, nested far deeper than payloadtrace walks (32).
		{name: "JSON nested 9,990 levels", payload: nested(9_990, `{"order_id":"deep"}`), traced: `{"order_id":"o-1"}`},
		{name: "non-UTF-8 in a JSON string", payload: []byte(`{"order_id":"o-` + hostileBadUTF8 + `"}`), traced: `{"order_id":"o-` + hostileRunes(hostileBadUTF8) + `"}`},
	}
}

// hostileRunes returns s with each invalid byte replaced by U+FFFD, as
// payload tracing writes it.
func hostileRunes(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// hostileSent is one message of the test, as published.
type hostileSent struct {
	c         *hostileCase
	decorated bool
	uuid      string
	metadata  message.Metadata
	size      int // of the payload
}

// hostileViolations collects values found out of bounds, from any
// goroutine.
type hostileViolations struct {
	mu   sync.Mutex
	list []string
}

func (v *hostileViolations) addf(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.list = append(v.list, fmt.Sprintf(format, args...))
}

// checkString notes s if it is longer than limit or not valid UTF-8.
func (v *hostileViolations) checkString(what, s string, limit int) {
	if len(s) > limit || !utf8.ValidString(s) {
		v.addf("%s: %d bytes (valid UTF-8: %t), want valid UTF-8 of at most %d bytes: %.60q",
			what, len(s), utf8.ValidString(s), limit, s)
	}
}

func (v *hostileViolations) report(t *testing.T) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.list {
		t.Error(s)
	}
}

// hostileLogLimit is the bound of a log field.
func hostileLogLimit(key string) int {
	if key == "error" || key == "panic" {
		return bound.Error
	}
	return bound.Attribute
}

// hostileLogCheck sits between the log handler of NewLogHandler and the
// JSON handler and checks every string value it is given. The JSON handler
// escapes invalid UTF-8 as \ufffd, so its output alone cannot tell that
// invalid bytes reached it.
type hostileLogCheck struct {
	inner slog.Handler
	bad   *hostileViolations
}

func (h hostileLogCheck) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h hostileLogCheck) Handle(ctx context.Context, r slog.Record) error {
	h.bad.checkString("log message", r.Message, bound.Attribute)
	r.Attrs(func(a slog.Attr) bool {
		h.check("", a)
		return true
	})
	return h.inner.Handle(ctx, r)
}

func (h hostileLogCheck) check(prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	h.bad.checkString("log key", a.Key, bound.Attribute)
	switch v.Kind() {
	case slog.KindGroup:
		for _, g := range v.Group() {
			h.check(prefix+a.Key+".", g)
		}
	case slog.KindString:
		h.bad.checkString("log field "+prefix+a.Key, v.String(), hostileLogLimit(a.Key))
	case slog.KindAny:
		h.bad.checkString("log field "+prefix+a.Key, fmt.Sprint(v.Any()), hostileLogLimit(a.Key))
	}
}

func (h hostileLogCheck) WithAttrs(attrs []slog.Attr) slog.Handler {
	for _, a := range attrs {
		h.check("", a)
	}
	return hostileLogCheck{inner: h.inner.WithAttrs(attrs), bad: h.bad}
}

func (h hostileLogCheck) WithGroup(name string) slog.Handler {
	return hostileLogCheck{inner: h.inner.WithGroup(name), bad: h.bad}
}

// TestHostileInput sends hostile metadata and payloads (issue #16) through
// the whole stack of README's "Instrument a router" on real Redis Streams:
// Instrument with the promobs and sentryobs backends and payload tracing,
// the default framework hook profile, JSON logs through NewLogHandler, and
// publishers decorated as README step 3 says, next to raw ones that put the
// hostile metadata on the wire exactly as written. Every message must be
// handled exactly once by each handler, and every span attribute, log
// field, label value, hook attribute and Sentry tag must stay within its
// bound.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	start := time.Now()
	client, prefix := testsvc.RedisPrefix(t)
	group := prefix + "group"
	sub := testsvc.RedisSubscriber(t, group)
	raw := testsvc.RedisPublisher(t)
	in, out := prefix+"in", prefix+"out"

	bad := &hostileViolations{}
	rec, tp, opts := newTracing(t)
	var logs loggingBuffer
	logger := slog.New(watermillobs.NewLogHandler(hostileLogCheck{
		inner: slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
		bad:   bad,
	}))
	reg := hooks.NewRegistry()
	opts = append(opts, watermillobs.WithLogger(logger), watermillobs.WithHookRegistry(reg))
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{
		Registry: reg, TracerProvider: tp, Logger: logger,
	}); err != nil {
		t.Fatal(err)
	}
	// An audit hook, as a user would register one, sees what the hook
	// operations carry.
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		bad.checkString("hook operation name", op.Name, len("publisher.publish.")+bound.Attribute)
		for _, a := range op.Attrs {
			if a.Value.Kind() == slog.KindString {
				bad.checkString("hook attribute "+a.Key+" of "+op.Name, a.Value.String(), bound.Attribute)
			}
			if a.Key == contract.CorrelationIDKey && !bound.IsID(a.Value.String()) {
				bad.addf("hook attribute correlation_id of %s: %.60q is no ID", op.Name, a.Value.String())
			}
		}
		return next(ctx)
	}), hooks.WithOperations("publisher.publish.*", "consumer.consume.*"), hooks.WithName("audit"))

	promReg := prometheus.NewRegistry()
	metrics, err := promobs.New(promReg, promobs.WithMaxMessageTypes(hostileMaxMessageTypes))
	if err != nil {
		t.Fatal(err)
	}
	transport := &sentry.MockTransport{}
	sentryClient, err := sentry.NewClient(sentry.ClientOptions{Dsn: "https://public@example.com/1", Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	// Closing stops the client's batch processors (goleak checks).
	t.Cleanup(sentryClient.Close)
	capture := sentryobs.New(sentryobs.WithHub(sentry.NewHub(sentryClient, sentry.NewScope())), sentryobs.WithLogger(logger))

	r := testsvc.NewRouter(t)
	if err := watermillobs.Instrument(r, watermillobs.InstrumentConfig{
		Tracing:        watermillobs.TracingConfig{ConsumerGroup: group},
		Backends:       []watermillobs.Backend{metrics, capture},
		PayloadTracing: &payloadtrace.Tracing{IncludeFields: []string{"order_id", "tenant_id"}},
	}, opts...); err != nil {
		t.Fatal(err)
	}
	inbox := newE2EInbox()
	r.AddHandler(hostileForward, in, sub, out, testsvc.RedisPublisher(t), func(msg *message.Message) ([]*message.Message, error) {
		inbox.record(msg)
		return []*message.Message{msg}, nil
	})
	var (
		deliveriesMu sync.Mutex
		deliveries   = map[string]int{}
	)
	r.AddConsumerHandler(hostileConsume, out, sub, func(msg *message.Message) error {
		inbox.record(msg)
		deliveriesMu.Lock()
		deliveries[msg.UUID]++
		n := deliveries[msg.UUID]
		deliveriesMu.Unlock()
		if n == 1 {
			return errHostileFirstDelivery
		}
		return nil
	})
	testsvc.RunRouter(t, r)

	// README step 3, and the raw publisher beneath it.
	pub := watermillobs.NewPublisher(metrics.DecoratePublisher(raw), opts...)
	cases := hostileCases()
	var sent []hostileSent
	for i := range cases {
		c := &cases[i]
		for _, decorated := range []bool{false, true} {
			payload := c.payload
			if payload == nil {
				payload = []byte(hostilePayload)
			}
			msg := message.NewMessage(watermill.NewUUID(), payload)
			msg.Metadata = maps.Clone(c.metadata)
			if msg.Metadata == nil {
				msg.Metadata = message.Metadata{}
			}
			s := hostileSent{c: c, decorated: decorated, uuid: msg.UUID, metadata: maps.Clone(msg.Metadata), size: len(payload)}
			p := message.Publisher(raw)
			if decorated {
				p = pub
			}
			if err := p.Publish(in, msg); err != nil {
				t.Fatalf("%s (decorated %t): cannot publish: %v", c.name, decorated, err)
			}
			sent = append(sent, s)
		}
	}

	// Nothing lost: every delivery arrives and every message is
	// acknowledged. Each message is delivered once to hostileForward and
	// twice to hostileConsume (the first delivery fails on purpose).
	hostileWait(t, inbox, 3*len(sent))
	e2eWaitNoPending(t, client, in, group)
	e2eWaitNoPending(t, client, out, group)
	wantSpans := 0
	for _, s := range sent {
		wantSpans += 4 // process in, send out, process out twice
		if s.decorated {
			wantSpans++ // send in
		}
	}
	spans := e2eWaitSpans(t, rec, wantSpans)
	got := inbox.snapshot()
	if len(got) != 3*len(sent) || len(spans) != wantSpans {
		t.Errorf("%d deliveries and %d spans, want %d and %d: a message was handled more often than once",
			len(got), len(spans), 3*len(sent), wantSpans)
	}
	records := loggingRecords(t, logs.String())

	for _, s := range sent {
		name := s.c.name + "/raw"
		if s.decorated {
			name = s.c.name + "/decorated"
		}
		t.Run(name, func(t *testing.T) {
			hostileCheckMessage(t, s, got, spans, records, in, out)
		})
	}

	t.Run("span attributes", func(t *testing.T) {
		for _, s := range spans {
			hostileCheckSpan(t, s)
		}
	})
	t.Run("log fields", func(t *testing.T) {
		for _, r := range records {
			for k, v := range r {
				if s, ok := v.(string); ok && len(s) > hostileLogLimit(k) {
					t.Errorf("log field %s: %d bytes, want at most %d", k, len(s), hostileLogLimit(k))
				}
			}
		}
	})
	t.Run("metric labels", func(t *testing.T) {
		hostileCheckMetrics(t, promReg, len(sent))
	})
	t.Run("sentry events", func(t *testing.T) {
		hostileCheckSentry(t, transport.Events(), sent)
	})
	t.Run("bounds seen by the log handler and hooks", func(t *testing.T) {
		bad.report(t)
	})
	t.Logf("%d messages (%d cases) handled in %s", len(sent), len(cases), time.Since(start).Round(time.Millisecond))
}

// hostileTimeout bounds the wait for every delivery. The race detector
// makes the 8 MiB and 10,000-key messages slow: the whole test takes
// 2 to 4 s without it and 15 to 21 s with it on a 2-core machine.
const hostileTimeout = 2 * time.Minute

// hostileWait waits until inbox holds n deliveries. It does not print them
// on failure, unlike e2eInbox.wait: they hold megabytes of metadata.
func hostileWait(t *testing.T, inbox *e2eInbox, n int) {
	t.Helper()
	deadline := time.After(hostileTimeout)
	for len(inbox.snapshot()) < n {
		select {
		case <-inbox.more:
		case <-deadline:
			t.Fatalf("%d of %d deliveries after %s", len(inbox.snapshot()), n, hostileTimeout)
		}
	}
}

// hostileCheckMessage checks what became of one message: its deliveries,
// correlation, spans, payload event and log records.
func hostileCheckMessage(t *testing.T, s hostileSent, got []e2eReceived, spans []sdktrace.ReadOnlySpan, records []map[string]any, in, out string) {
	t.Helper()
	var forwarded, consumed []e2eReceived
	for _, r := range got {
		switch {
		case r.uuid != s.uuid:
		case r.handler == hostileForward:
			forwarded = append(forwarded, r)
		case r.handler == hostileConsume:
			consumed = append(consumed, r)
		}
	}
	if len(forwarded) != 1 || len(consumed) != 2 {
		t.Fatalf("delivered %d times to %s and %d times to %s, want exactly 1 and 2 (one failure on purpose, one success)",
			len(forwarded), hostileForward, len(consumed), hostileConsume)
	}
	fwd := forwarded[0]

	// Correlation: a hostile correlation_id is treated as absent.
	for _, r := range append(forwarded, consumed...) {
		if !bound.IsID(r.correlationID) {
			t.Errorf("%s: context correlation ID %.60q is no ID", r.handler, r.correlationID)
		}
	}
	if s.c.hostileCorrelation {
		if !e2eUUIDPattern.MatchString(fwd.correlationID) {
			t.Errorf("context correlation ID %.60q, want a fresh UUID in place of the hostile one", fwd.correlationID)
		}
	} else if consumed[0].correlationID != fwd.correlationID || consumed[1].correlationID != fwd.correlationID {
		t.Errorf("correlation ID %s in %s, %s and %s in %s: want one conversation across the hop",
			fwd.correlationID, hostileForward, consumed[0].correlationID, consumed[1].correlationID, hostileConsume)
	}
	// The consumed message carries what was sent, bytes unchanged (the
	// decorated publisher only adds what is missing).
	for k, v := range s.metadata {
		if fwd.metadata[k] != v {
			t.Errorf("metadata %.40q arrived changed (%d bytes, sent %d)", k, len(fwd.metadata[k]), len(v))
		}
	}

	// Spans: one per hop, linked across the hop whatever the input.
	var sendIn, processIn, sendOut, processOut []sdktrace.ReadOnlySpan
	for _, sp := range spans {
		if id, _ := e2eStringAttr(sp, semconv.MessagingMessageIDKey); id != s.uuid {
			continue
		}
		switch sp.Name() {
		case "send " + in:
			sendIn = append(sendIn, sp)
		case "process " + in:
			processIn = append(processIn, sp)
		case "send " + out:
			sendOut = append(sendOut, sp)
		case "process " + out:
			processOut = append(processOut, sp)
		default:
			t.Errorf("unexpected span %q", sp.Name())
		}
	}
	wantSendIn := 0
	if s.decorated {
		wantSendIn = 1
	}
	if len(sendIn) != wantSendIn || len(processIn) != 1 || len(sendOut) != 1 || len(processOut) != 2 {
		t.Fatalf("spans: %d send in, %d process in, %d send out, %d process out; want %d, 1, 1, 2",
			len(sendIn), len(processIn), len(sendOut), len(processOut), wantSendIn)
	}
	parent := processIn[0].Parent()
	_, hasTraceparent := s.metadata[contract.TraceparentKey]
	switch {
	case hasTraceparent && s.c.ignoredTraceparent:
		if parent.IsValid() {
			t.Errorf("process span has parent %s/%s from a hostile traceparent, want a root", parent.TraceID(), parent.SpanID())
		}
	case hasTraceparent:
		if parent.SpanID().String() != hostileRemoteSpan || parent.TraceID().String() != hostileTraceparent[3:35] {
			t.Errorf("process span parent %s/%s, want the traceparent's span: a hostile tracestate or baggage must not break the trace",
				parent.TraceID(), parent.SpanID())
		}
	case s.decorated:
		e2eWantChild(t, processIn[0], sendIn[0])
	case parent.IsValid():
		t.Errorf("process span has parent %s/%s, want a root", parent.TraceID(), parent.SpanID())
	}
	e2eWantChild(t, sendOut[0], processIn[0])
	e2eWantChild(t, processOut[0], sendOut[0])
	e2eWantChild(t, processOut[1], sendOut[0])
	// A conversation ID on any span is a real one: a hostile correlation_id
	// is left out, as consumers treat it as absent.
	for _, sp := range slices.Concat(sendIn, processIn, sendOut, processOut) {
		if v, ok := e2eStringAttr(sp, semconv.MessagingMessageConversationIDKey); ok && !bound.IsID(v) {
			t.Errorf("%s: conversation_id %.60q is no ID", sp.Name(), v)
		}
	}
	for _, sp := range processIn {
		if _, ok := e2eStringAttr(sp, semconv.MessagingMessageConversationIDKey); !ok {
			t.Errorf("%s: no conversation_id", sp.Name())
		}
	}
	if v, _ := e2eStringAttr(processIn[0], semconv.MessagingMessageConversationIDKey); v != fwd.correlationID {
		t.Errorf("conversation_id %.60q, want the handler's correlation ID %s", v, fwd.correlationID)
	}

	// Payload tracing on the first process span.
	if v, _ := spanAttr(processIn[0], "cqrs.payload_size"); v.AsInt64() != int64(s.size) {
		t.Errorf("cqrs.payload_size %v, want %d", v.String(), s.size)
	}
	var events []string
	for _, e := range processIn[0].Events() {
		if e.Name == "cqrs.command_payload" {
			for _, kv := range e.Attributes {
				if kv.Key == "payload" {
					events = append(events, kv.Value.AsString())
				}
			}
		}
	}
	want := s.c.traced
	if s.c.payload == nil {
		want = hostilePayloadTraced
	}
	switch {
	case want == "" && len(events) != 0:
		t.Errorf("payload events %q, want none", events)
	case want != "" && (len(events) != 1 || events[0] != want):
		t.Errorf("payload events %.200q, want one with %.200q", events, want)
	}

	// Logs: one record per delivery.
	var logged []string
	for _, r := range records {
		if r["msg"] == "message handled" && r["message_uuid"] == s.uuid {
			logged = append(logged, fmt.Sprintf("%v/%v", r["handler"], r["outcome"]))
			if r["handler"] == hostileForward && r["correlation_id"] != fwd.correlationID {
				t.Errorf("logged correlation_id %.60q, want the handler's %s", r["correlation_id"], fwd.correlationID)
			}
		}
	}
	if want := []string{hostileForward + "/success", hostileConsume + "/error", hostileConsume + "/success"}; !sameMultiset(logged, want) {
		t.Errorf("message handled records %q, want %q", logged, want)
	}
}

// sameMultiset reports whether a and b hold the same strings, as often.
func sameMultiset(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}

// hostileCheckSpan checks the bounds of a span: name, status, attributes,
// links and events. The SDK keeps attribute values whole by default
// (AttributeValueLengthLimit unset), so each bound is this module's. The
// payload of payload tracing is bounded by its MaxPayloadChars (4096 by
// default), the other attributes by bound.Attribute.
func hostileCheckSpan(t *testing.T, s sdktrace.ReadOnlySpan) {
	t.Helper()
	if n := s.Name(); len(n) > len("process ")+bound.Attribute || !utf8.ValidString(n) {
		t.Errorf("span name of %d bytes (valid UTF-8 %t)", len(n), utf8.ValidString(n))
	}
	if d := s.Status().Description; len(d) > bound.Error || !utf8.ValidString(d) {
		t.Errorf("%s: status description of %d bytes (valid UTF-8 %t)", s.Name(), len(d), utf8.ValidString(d))
	}
	e2eCheckBoundedAttributes(t, s.Name()+" attribute", s.Attributes())
	for _, l := range s.Links() {
		e2eCheckBoundedAttributes(t, s.Name()+" link attribute", l.Attributes)
	}
	for _, e := range s.Events() {
		var other []attribute.KeyValue
		for _, kv := range e.Attributes {
			if e.Name == "cqrs.command_payload" && kv.Key == "payload" {
				if v := kv.Value.AsString(); len(v) > 4096 || !utf8.ValidString(v) {
					t.Errorf("%s: payload event of %d bytes (valid UTF-8 %t), want at most 4096", s.Name(), len(v), utf8.ValidString(v))
				}
				continue
			}
			other = append(other, kv)
		}
		e2eCheckBoundedAttributes(t, s.Name()+" event "+e.Name+" attribute", other)
	}
}

// hostileCheckMetrics checks every label value of the registry, the
// message_type cap, and that the counters saw each handling once.
func hostileCheckMetrics(t *testing.T, g prometheus.Gatherer, messages int) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	types := map[string]bool{}
	var handled, failed, published float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
				if v := lp.GetValue(); len(v) > bound.Label || !utf8.ValidString(v) {
					t.Errorf("%s{%s}: label value of %d bytes (valid UTF-8 %t), want at most %d",
						mf.GetName(), lp.GetName(), len(v), utf8.ValidString(v), bound.Label)
				}
			}
			switch mf.GetName() {
			case "cqrs_message_total":
				types[labels["message_type"]] = true
				handled += m.GetCounter().GetValue()
				if labels["outcome"] == contract.OutcomeError {
					failed += m.GetCounter().GetValue()
				}
			case "watermill_messages_published_total":
				published += m.GetCounter().GetValue()
			}
		}
	}
	if len(types) > hostileMaxMessageTypes+1 || !types["other"] {
		t.Errorf("message_type values %q, want at most %d and \"other\"", slices.Sorted(maps.Keys(types)), hostileMaxMessageTypes)
	}
	// Per message: handled once by hostileForward, twice by hostileConsume
	// (one failure); published by the decorated producer (half of them)
	// and by the forward.
	if want := float64(3 * messages); handled != want {
		t.Errorf("cqrs_message_total sums to %v, want %v", handled, want)
	}
	if want := float64(messages); failed != want {
		t.Errorf("cqrs_message_total{outcome=error} sums to %v, want %v", failed, want)
	}
	if want := float64(messages/2 + messages); published != want {
		t.Errorf("watermill_messages_published_total sums to %v, want %v", published, want)
	}
}

// hostileCheckSentry checks that each message made one Sentry event (its
// failed first delivery) with bounded tags and message context.
func hostileCheckSentry(t *testing.T, events []*sentry.Event, sent []hostileSent) {
	t.Helper()
	perUUID := map[string]int{}
	for _, e := range events {
		for k, v := range e.Tags {
			if len(v) > sentryobs.TagValueLimit || !utf8.ValidString(v) {
				t.Errorf("sentry tag %s: %d bytes (valid UTF-8 %t), want at most %d", k, len(v), utf8.ValidString(v), sentryobs.TagValueLimit)
			}
		}
		for k, v := range e.Contexts[sentryobs.ContextMessage] {
			if s, ok := v.(string); !ok || len(s) > bound.Attribute || !utf8.ValidString(s) {
				t.Errorf("sentry message context %s: %T of %d bytes", k, v, len(fmt.Sprint(v)))
			}
		}
		if e.Tags[sentryobs.TagHandler] != hostileConsume {
			t.Errorf("sentry event from handler %q, want %q", e.Tags[sentryobs.TagHandler], hostileConsume)
		}
		if id := e.Tags[sentryobs.TagCorrelationID]; !bound.IsID(id) {
			t.Errorf("sentry correlation_id tag %.60q is no ID", id)
		}
		uuid, _ := e.Contexts[sentryobs.ContextMessage]["uuid"].(string)
		perUUID[uuid]++
	}
	for _, s := range sent {
		if n := perUUID[s.uuid]; n != 1 {
			t.Errorf("%s: %d Sentry events, want 1", s.c.name, n)
		}
	}
	if len(events) != len(sent) {
		t.Errorf("%d Sentry events, want %d", len(events), len(sent))
	}
}
