package watermillobs_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// e2eTransports are the Pub/Subs the conversation scenario runs over.
var e2eTransports = []struct {
	name string
	new  e2eTransportFactory
}{
	{"redis streams", e2eRedisTransport},
	{"gochannel", e2eGoChannelTransport},
}

// TestE2E_conversation follows one conversation across two processes:
// process A publishes, process B's router handles it and publishes twice
// (a returned message and a direct publish), and B handles both. One trace
// and one correlation ID must cover all of it.
func TestE2E_conversation(t *testing.T) {
	t.Parallel()
	for _, tr := range e2eTransports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			e2eRunConversation(t, tr.new, false, e2eExplicitPropagator)
		})
	}
}

// TestE2E_conversation_global_propagator is the conversation with no
// WithPropagators option: the global propagator set only after the router
// and publishers were instrumented, and no propagator set at all. Both must
// give one trace. Not parallel: it changes the OTel globals.
func TestE2E_conversation_global_propagator(t *testing.T) {
	for _, mode := range []e2ePropagatorMode{e2eGlobalSetAfter, e2eNoPropagator} {
		for _, tr := range e2eTransports {
			t.Run(string(mode)+"/"+tr.name, func(t *testing.T) {
				e2eRunConversation(t, tr.new, false, mode)
			})
		}
	}
}

// TestE2E_conversation_link_only is the conversation with consumer spans in
// link-only mode: each handling starts a new trace that links to the send
// span, and correlation flows as before.
func TestE2E_conversation_link_only(t *testing.T) {
	t.Parallel()
	for _, tr := range e2eTransports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			e2eRunConversation(t, tr.new, true, e2eExplicitPropagator)
		})
	}
}

// e2eRunConversation runs the conversation scenario over a fresh transport and
// checks spans, correlation and causation.
func e2eRunConversation(t *testing.T, newTransport e2eTransportFactory, linkOnly bool, mode e2ePropagatorMode) {
	tr := newTransport(t)
	newProcess := newE2EProcess
	if mode != e2eExplicitPropagator {
		restoreGlobalPropagator(t)
		newProcess = newE2EProcessGlobal
	}
	procA := newProcess(t)
	procB := newProcess(t)
	procBConfig := watermillobs.InstrumentConfig{Tracing: watermillobs.TracingConfig{LinkOnly: linkOnly}}
	topic1, topic2, topic3 := tr.topic("orders"), tr.topic("returned"), tr.topic("published")

	pubA := watermillobs.NewPublisher(tr.pubA, procA.opts...)
	directPub := watermillobs.NewPublisher(tr.pubB, procB.opts...)

	inbox := newE2EInbox()
	r := testsvc.NewRouter(t)
	if err := instrument(r, procBConfig, procB.opts...); err != nil {
		t.Fatalf("cannot instrument router: %v", err)
	}
	r.AddHandler("handler1", topic1, tr.sub, topic2, tr.pubB, func(msg *message.Message) ([]*message.Message, error) {
		inbox.record(msg)
		direct := message.NewMessage(watermill.NewUUID(), []byte(`{"via":"publisher"}`))
		direct.SetContext(msg.Context())
		if err := directPub.Publish(topic3, direct); err != nil {
			return nil, err
		}
		return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte(`{"via":"return"}`))}, nil
	})
	handler2 := func(msg *message.Message) error {
		inbox.record(msg)
		return nil
	}
	r.AddConsumerHandler("handler2_returned", topic2, tr.sub, handler2)
	r.AddConsumerHandler("handler2_published", topic3, tr.sub, handler2)
	testsvc.RunRouter(t, r)
	if mode == e2eGlobalSetAfter {
		otel.SetTextMapPropagator(propagation.TraceContext{})
	}

	correlationID := hooks.NewCorrelationID()
	first := message.NewMessage(watermill.NewUUID(), []byte(`{"order":"42"}`))
	first.SetContext(hooks.WithCorrelationID(context.Background(), correlationID))
	before := time.Now()
	if err := pubA.Publish(topic1, first); err != nil {
		t.Fatalf("process A cannot publish: %v", err)
	}

	got := inbox.wait(t, 3)
	spansA := e2eWaitSpans(t, procA.rec, 1)
	spansB := e2eWaitSpans(t, procB.rec, 5)
	after := time.Now()
	if len(got) != 3 || len(spansA) != 1 || len(spansB) != 5 {
		t.Fatalf("want 3 messages handled, 1 span in A and 5 in B; got %d messages, A %q, B %q",
			len(got), e2eSpanNames(spansA), e2eSpanNames(spansB))
	}

	in1, in2, in3 := e2eByTopic(t, got, topic1), e2eByTopic(t, got, topic2), e2eByTopic(t, got, topic3)
	if in1.uuid != first.UUID {
		t.Errorf("handler1 got message %s, want %s", in1.uuid, first.UUID)
	}

	// Correlation and causation, as the handlers saw them.
	for _, in := range []e2eReceived{in1, in2, in3} {
		if v := in.metadata[contract.CorrelationIDKey]; v != correlationID {
			t.Errorf("%s: metadata correlation_id = %q, want %q", in.handler, v, correlationID)
		}
		if in.correlationID != correlationID {
			t.Errorf("%s: context correlation ID = %q, want %q", in.handler, in.correlationID, correlationID)
		}
		if in.causationID != in.uuid {
			t.Errorf("%s: context causation ID = %q, want the handled message's UUID %q", in.handler, in.causationID, in.uuid)
		}
		e2eCheckPublishedAt(t, in, before, after)
	}
	if v, ok := in1.metadata[contract.CausationIDKey]; ok {
		t.Errorf("first message: causation_id = %q, want none (the entry set none)", v)
	}
	for _, in := range []e2eReceived{in2, in3} {
		if v := in.metadata[contract.CausationIDKey]; v != first.UUID {
			t.Errorf("%s: causation_id = %q, want the UUID of the message handler1 consumed %q", in.handler, v, first.UUID)
		}
	}

	// Span names, kinds and attributes.
	sendA := e2eOnlySpanNamed(t, spansA, "send "+topic1)
	process1 := e2eOnlySpanNamed(t, spansB, "process "+topic1)
	send2 := e2eOnlySpanNamed(t, spansB, "send "+topic2)
	send3 := e2eOnlySpanNamed(t, spansB, "send "+topic3)
	process2 := e2eOnlySpanNamed(t, spansB, "process "+topic2)
	process3 := e2eOnlySpanNamed(t, spansB, "process "+topic3)
	for _, c := range []struct {
		span      sdktrace.ReadOnlySpan
		kind      trace.SpanKind
		topic     string
		messageID string
	}{
		{sendA, trace.SpanKindProducer, topic1, first.UUID},
		{process1, trace.SpanKindConsumer, topic1, first.UUID},
		{send2, trace.SpanKindProducer, topic2, in2.uuid},
		{process2, trace.SpanKindConsumer, topic2, in2.uuid},
		{send3, trace.SpanKindProducer, topic3, in3.uuid},
		{process3, trace.SpanKindConsumer, topic3, in3.uuid},
	} {
		if k := c.span.SpanKind(); k != c.kind {
			t.Errorf("%s: kind %s, want %s", c.span.Name(), k, c.kind)
		}
		for key, want := range map[attribute.Key]string{
			semconv.MessagingSystemKey:                tr.system,
			semconv.MessagingDestinationNameKey:       c.topic,
			semconv.MessagingMessageIDKey:             c.messageID,
			semconv.MessagingMessageConversationIDKey: correlationID,
		} {
			if v, ok := e2eStringAttr(c.span, key); !ok || v != want {
				t.Errorf("%s: %s = %q (present %t), want %q", c.span.Name(), key, v, ok, want)
			}
		}
	}

	// Span structure. Each send span is a child of the handling it happened
	// in, in both modes.
	if sendA.Parent().IsValid() {
		t.Errorf("%s: parent %s, want a root span", sendA.Name(), sendA.Parent().SpanID())
	}
	e2eWantChild(t, send2, process1)
	e2eWantChild(t, send3, process1)
	if !linkOnly {
		e2eWantChild(t, process1, sendA)
		e2eWantChild(t, process2, send2)
		e2eWantChild(t, process3, send3)
		traceID := sendA.SpanContext().TraceID()
		for _, s := range append(spansA, spansB...) {
			if got := s.SpanContext().TraceID(); got != traceID {
				t.Errorf("%s: trace %s, want the conversation's trace %s", s.Name(), got, traceID)
			}
		}
		return
	}
	e2eWantLinkedRoot(t, process1, sendA)
	e2eWantLinkedRoot(t, process2, send2)
	e2eWantLinkedRoot(t, process3, send3)
}

// e2eWantChild checks that child's parent is parent, in parent's trace.
func e2eWantChild(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	p, sc := child.Parent(), parent.SpanContext()
	if p.TraceID() != sc.TraceID() || p.SpanID() != sc.SpanID() {
		t.Errorf("%s: parent %s/%s, want %s %s/%s", child.Name(), p.TraceID(), p.SpanID(), parent.Name(), sc.TraceID(), sc.SpanID())
	}
	if child.SpanContext().TraceID() != sc.TraceID() {
		t.Errorf("%s: trace %s, want its parent's %s", child.Name(), child.SpanContext().TraceID(), sc.TraceID())
	}
}

// e2eWantLinkedRoot checks that span starts a new trace and links to producer.
func e2eWantLinkedRoot(t *testing.T, span, producer sdktrace.ReadOnlySpan) {
	t.Helper()
	if span.Parent().IsValid() {
		t.Errorf("%s: parent %s/%s, want a root span", span.Name(), span.Parent().TraceID(), span.Parent().SpanID())
	}
	if span.SpanContext().TraceID() == producer.SpanContext().TraceID() {
		t.Errorf("%s: in the producer's trace %s, want a new trace", span.Name(), producer.SpanContext().TraceID())
	}
	links := span.Links()
	if len(links) != 1 {
		t.Fatalf("%s: %d links, want 1 to %s", span.Name(), len(links), producer.Name())
	}
	// The link's span context was extracted from metadata, so it is remote;
	// everything else must equal the producer's span context.
	if got, want := links[0].SpanContext, producer.SpanContext(); !got.IsRemote() || !got.WithRemote(false).Equal(want) {
		t.Errorf("%s: link to %+v, want remote %+v (%s)", span.Name(), got, want, producer.Name())
	}
}

// e2eCheckPublishedAt checks that the message carries a parseable publish time
// taken during the test.
func e2eCheckPublishedAt(t *testing.T, in e2eReceived, before, after time.Time) {
	t.Helper()
	v, ok := in.metadata[contract.PublishedAtKey]
	if !ok {
		t.Errorf("%s: no published_at in %v", in.handler, in.metadata)
		return
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Errorf("%s: published_at %q: %v", in.handler, v, err)
		return
	}
	// The wall clock only: the parsed time has no monotonic reading.
	if at.Before(before.Round(0).Add(-time.Millisecond)) || at.After(after.Round(0)) {
		t.Errorf("%s: published_at %s, want between %s and %s", in.handler, at, before, after)
	}
}

// e2eUUIDPattern matches the canonical form of a UUID.
var e2eUUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestE2E_hostile_metadata publishes, through an undecorated publisher to
// real Redis Streams, messages with malformed, oversized or missing
// metadata. Each must be handled and acknowledged exactly once, get its
// process span, and leave only bounded, valid UTF-8 span attributes.
func TestE2E_hostile_metadata(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	raw := testsvc.RedisPublisher(t)
	group := prefix + "group"
	sub := testsvc.RedisSubscriber(t, group)
	procB := newE2EProcess(t)
	topic := prefix + "hostile"

	inbox := newE2EInbox()
	r := testsvc.NewRouter(t)
	if err := instrument(r, watermillobs.InstrumentConfig{}, procB.opts...); err != nil {
		t.Fatalf("cannot instrument router: %v", err)
	}
	r.AddConsumerHandler("hostile", topic, sub, func(msg *message.Message) error {
		inbox.record(msg)
		return nil
	})
	testsvc.RunRouter(t, r)

	const mib = 1 << 20
	const badUTF8 = "\xff\xfe\xc0\x80-not-utf8"
	// A traceparent the propagator would accept (future versions may carry
	// more fields), made 1 MiB long.
	hugeTraceparent := "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("f", mib)
	cases := []struct {
		name     string
		metadata message.Metadata // nil stays nil
		payload  []byte
		// rootSpan: the traceparent must be ignored, so the span is a root.
		rootSpan bool
		// hostileCorrelation must not reach the handler's context.
		hostileCorrelation string
	}{
		{name: "garbage traceparent", metadata: message.Metadata{contract.TraceparentKey: "garbage"}, rootSpan: true},
		{name: "1 MiB traceparent", metadata: message.Metadata{contract.TraceparentKey: hugeTraceparent}, rootSpan: true},
		{name: "non-UTF-8 correlation_id", metadata: message.Metadata{contract.CorrelationIDKey: badUTF8, contract.CausationIDKey: badUTF8}, hostileCorrelation: badUTF8},
		{name: "1 MiB correlation_id", metadata: message.Metadata{contract.CorrelationIDKey: strings.Repeat("c", mib)}, hostileCorrelation: strings.Repeat("c", mib)},
		{name: "1 MiB name", metadata: message.Metadata{contract.NameKey: strings.Repeat("n", mib-len(badUTF8)) + badUTF8}},
		{name: "nil metadata", metadata: nil},
		{name: "non-JSON payload", metadata: message.Metadata{contract.MessageKindKey: badUTF8}, payload: []byte("\x00\xff{not json")},
	}
	uuids := make([]string, len(cases))
	for i, c := range cases {
		payload := c.payload
		if payload == nil {
			payload = []byte(`{}`)
		}
		msg := message.NewMessage(watermill.NewUUID(), payload)
		msg.Metadata = c.metadata
		uuids[i] = msg.UUID
		if err := raw.Publish(topic, msg); err != nil {
			t.Fatalf("%s: cannot publish: %v", c.name, err)
		}
	}

	inbox.wait(t, len(cases))
	e2eWaitNoPending(t, client, topic, group)
	spans := e2eWaitSpans(t, procB.rec, len(cases))
	got := inbox.snapshot()

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var handled []e2eReceived
			for _, in := range got {
				if in.uuid == uuids[i] {
					handled = append(handled, in)
				}
			}
			if len(handled) != 1 {
				t.Fatalf("handled %d times, want exactly once", len(handled))
			}
			in := handled[0]
			if !e2eUUIDPattern.MatchString(in.correlationID) {
				t.Errorf("context correlation ID %q, want a fresh UUID", bound.String(in.correlationID, 64))
			}
			if c.hostileCorrelation != "" && in.correlationID == c.hostileCorrelation {
				t.Errorf("the hostile correlation_id reached the handler's context")
			}
			var processed []sdktrace.ReadOnlySpan
			for _, s := range spans {
				if id, _ := e2eStringAttr(s, semconv.MessagingMessageIDKey); id == uuids[i] {
					processed = append(processed, s)
				}
			}
			if len(processed) != 1 {
				t.Fatalf("%d spans for the message, want one process span", len(processed))
			}
			span := processed[0]
			if span.Name() != "process "+topic || span.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("span %q of kind %s, want %q of kind consumer", span.Name(), span.SpanKind(), "process "+topic)
			}
			if span.Status().Code != codes.Unset {
				t.Errorf("span status %v, want unset", span.Status())
			}
			if v, _ := e2eStringAttr(span, semconv.MessagingMessageConversationIDKey); v != in.correlationID {
				t.Errorf("conversation_id %q, want the context's correlation ID %q", bound.String(v, 64), in.correlationID)
			}
			if c.rootSpan && span.Parent().IsValid() {
				t.Errorf("parent %s/%s taken from a hostile traceparent, want a root span", span.Parent().TraceID(), span.Parent().SpanID())
			}
		})
	}
	if len(spans) != len(cases) {
		t.Errorf("%d spans, want one per message (%d): %q", len(spans), len(cases), e2eSpanNames(spans))
	}
	for _, s := range spans {
		e2eCheckBoundedAttributes(t, s.Name()+" attribute", s.Attributes())
		for _, l := range s.Links() {
			e2eCheckBoundedAttributes(t, s.Name()+" link attribute", l.Attributes)
		}
		for _, e := range s.Events() {
			e2eCheckBoundedAttributes(t, s.Name()+" event attribute", e.Attributes)
		}
	}
}

// e2eCheckBoundedAttributes checks that every string value in attrs is valid
// UTF-8 of at most bound.Attribute bytes.
func e2eCheckBoundedAttributes(t *testing.T, what string, attrs []attribute.KeyValue) {
	t.Helper()
	for _, kv := range attrs {
		var values []string
		switch kv.Value.Type() {
		case attribute.STRING:
			values = []string{kv.Value.AsString()}
		case attribute.STRINGSLICE:
			values = kv.Value.AsStringSlice()
		}
		for _, v := range values {
			if len(v) > bound.Attribute || !utf8.ValidString(v) {
				t.Errorf("%s %s: %d bytes (valid UTF-8: %t), want valid UTF-8 of at most %d bytes",
					what, kv.Key, len(v), utf8.ValidString(v), bound.Attribute)
			}
		}
	}
}

// TestE2E_nil_metadata_in_process drives a message whose Metadata is nil
// through the instrumented handler chain directly: no broker can deliver a
// nil map (Redis Streams and gochannel both hand over an empty one), but an
// in-process caller can.
func TestE2E_nil_metadata_in_process(t *testing.T) {
	t.Parallel()
	proc := newE2EProcess(t)
	ran := 0
	handler := watermillobs.Correlation(proc.opts...)(watermillobs.Tracing(watermillobs.TracingConfig{}, proc.opts...)(
		func(msg *message.Message) ([]*message.Message, error) {
			ran++
			return []*message.Message{message.NewMessage(watermill.NewUUID(), nil)}, nil
		}))
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	msg.Metadata = nil

	produced, err := handler(msg)
	if err != nil || ran != 1 {
		t.Fatalf("handler ran %d times and returned %v, want once and no error", ran, err)
	}
	if len(produced) != 1 {
		t.Fatalf("%d messages produced, want 1", len(produced))
	}
	md := produced[0].Metadata
	if !e2eUUIDPattern.MatchString(md[contract.CorrelationIDKey]) {
		t.Errorf("produced correlation_id %q, want a fresh UUID", md[contract.CorrelationIDKey])
	}
	if md[contract.CausationIDKey] != msg.UUID {
		t.Errorf("produced causation_id %q, want the handled message's UUID %q", md[contract.CausationIDKey], msg.UUID)
	}
	spans := proc.rec.Ended()
	if len(spans) != 1 || spans[0].SpanKind() != trace.SpanKindConsumer || spans[0].Parent().IsValid() {
		t.Errorf("spans %q, want one root consumer span", e2eSpanNames(spans))
	}
}
