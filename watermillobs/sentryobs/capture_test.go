package sentryobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/getsentry/sentry-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs"
)

// testDSN points at a host that is never contacted: every client in these
// tests has an in-memory transport.
const testDSN = "https://public@example.com/1"

// newHub returns a hub whose client records events in memory.
func newHub(t *testing.T, opts ...func(*sentry.ClientOptions)) (*sentry.Hub, *sentry.MockTransport) {
	t.Helper()
	transport := &sentry.MockTransport{}
	co := sentry.ClientOptions{Dsn: testDSN, Transport: transport}
	for _, o := range opts {
		o(&co)
	}
	client, err := sentry.NewClient(co)
	if err != nil {
		t.Fatalf("cannot create sentry client: %v", err)
	}
	// Close stops the client's batch processors.
	t.Cleanup(client.Close)
	return sentry.NewHub(client, sentry.NewScope()), transport
}

// panicTransport is a transport whose SendEvent panics, as a broken custom
// transport would.
type panicTransport struct{ sentry.MockTransport }

func (*panicTransport) SendEvent(*sentry.Event) { panic("transport exploded") }

func newMessage(metadata map[string]string) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	for k, v := range metadata {
		msg.Metadata.Set(k, v)
	}
	return msg
}

func exceptionValue(e *sentry.Event) string {
	if len(e.Exception) == 0 {
		return e.Message
	}
	return e.Exception[len(e.Exception)-1].Value
}

var errDeclined = errors.New("payment declined")

func TestMiddleware_outcomes(t *testing.T) {
	errBoring := errors.New("boring")
	tests := []struct {
		name       string
		opts       []sentryobs.Option
		err        error
		wantEvents int
	}{
		{name: "success", err: nil, wantEvents: 0},
		{name: "error", err: errDeclined, wantEvents: 1},
		{name: "wrapped error", err: fmt.Errorf("cannot charge: %w", errDeclined), wantEvents: 1},
		{name: "context canceled", err: fmt.Errorf("cannot charge: %w", context.Canceled), wantEvents: 0},
		{
			name:       "custom filter ignores",
			opts:       []sentryobs.Option{sentryobs.WithIgnoreErrors(func(err error) bool { return errors.Is(err, errBoring) })},
			err:        errBoring,
			wantEvents: 0,
		},
		{
			name:       "custom filter replaces default",
			opts:       []sentryobs.Option{sentryobs.WithIgnoreErrors(func(err error) bool { return errors.Is(err, errBoring) })},
			err:        context.Canceled,
			wantEvents: 1,
		},
		{
			name:       "nil filter keeps default",
			opts:       []sentryobs.Option{sentryobs.WithIgnoreErrors(nil)},
			err:        context.Canceled,
			wantEvents: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub, transport := newHub(t)
			opts := append([]sentryobs.Option{sentryobs.WithHub(hub)}, tt.opts...)
			produced := []*message.Message{newMessage(nil)}
			h := sentryobs.Middleware(opts...)(func(*message.Message) ([]*message.Message, error) {
				return produced, tt.err
			})

			msgs, err := h(newMessage(nil))

			if err != tt.err {
				t.Errorf("handler returned %v, want the handler's error %v unchanged", err, tt.err)
			}
			if len(msgs) != 1 || msgs[0] != produced[0] {
				t.Errorf("handler returned messages %v, want the handler's %v", msgs, produced)
			}
			events := transport.Events()
			if len(events) != tt.wantEvents {
				t.Fatalf("captured %d events, want %d", len(events), tt.wantEvents)
			}
			if tt.wantEvents == 1 {
				if got := exceptionValue(events[0]); got != tt.err.Error() {
					t.Errorf("captured exception %q, want %q", got, tt.err.Error())
				}
				if events[0].Level != sentry.LevelError {
					t.Errorf("captured level %q, want %q", events[0].Level, sentry.LevelError)
				}
			}
		})
	}
}

// routerHandler is the name and topic of the handler in router tests.
const (
	routerHandler = "orders-handler"
	routerTopic   = "orders"
)

// runRouter runs a router with mw and handler on a Go channel, publishes msg
// and returns once the router is running. Stop it by ending the test.
func runRouter(t *testing.T, mw message.HandlerMiddleware, handler message.NoPublishHandlerFunc, msg *message.Message) {
	t.Helper()
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("cannot create router: %v", err)
	}
	router.AddMiddleware(mw)
	router.AddConsumerHandler(routerHandler, routerTopic, pubSub, handler)
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := router.Close(); err != nil {
			t.Errorf("cannot close router: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("router failed: %v", err)
		}
		_ = pubSub.Close()
	})
	select {
	case <-router.Running():
	case <-time.After(5 * time.Second):
		t.Fatal("router did not start")
	}
	if err := pubSub.Publish(routerTopic, msg); err != nil {
		t.Fatalf("cannot publish: %v", err)
	}
}

// failOnce returns a handler that fails the first delivery with fail and
// closes done when a redelivery succeeds.
func failOnce(fail func()) (message.NoPublishHandlerFunc, <-chan struct{}) {
	done := make(chan struct{})
	var calls int
	return func(*message.Message) error {
		calls++
		if calls == 1 {
			fail()
			return errDeclined
		}
		close(done)
		return nil
	}, done
}

func waitFor(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the message was not redelivered and handled")
	}
}

func TestMiddleware_router_error_tags(t *testing.T) {
	hub, transport := newHub(t)
	handler, done := failOnce(func() {})
	msg := newMessage(map[string]string{
		contract.NameKey:          "OrderPlaced",
		contract.MessageKindKey:   contract.KindEvent,
		contract.CorrelationIDKey: "corr-42",
		contract.CausationIDKey:   "cause-7",
	})

	runRouter(t, sentryobs.Middleware(sentryobs.WithHub(hub)), handler, msg)
	waitFor(t, done)

	events := transport.Events()
	if len(events) != 1 {
		t.Fatalf("captured %d events for one failure and one success, want 1", len(events))
	}
	e := events[0]
	wantTags := map[string]string{
		sentryobs.TagMessageType:   "OrderPlaced",
		sentryobs.TagCorrelationID: "corr-42",
		sentryobs.TagHandler:       routerHandler,
		sentryobs.TagTopic:         routerTopic,
		sentryobs.TagMessageKind:   contract.KindEvent,
	}
	for k, want := range wantTags {
		if got := e.Tags[k]; got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
	if _, ok := e.Tags[sentryobs.TagTraceID]; ok {
		t.Errorf("tag %s set without a span: %q", sentryobs.TagTraceID, e.Tags[sentryobs.TagTraceID])
	}
	info := e.Contexts[sentryobs.ContextMessage]
	if info["uuid"] != msg.UUID || info["causation_id"] != "cause-7" {
		t.Errorf("message context = %v, want uuid %s and causation_id cause-7", info, msg.UUID)
	}
	if got := exceptionValue(e); got != errDeclined.Error() {
		t.Errorf("captured exception %q, want %q", got, errDeclined)
	}
}

type panicValue struct{ reason string }

func TestMiddleware_panic(t *testing.T) {
	tests := []struct {
		name      string
		value     any
		wantValue string
	}{
		{name: "error", value: errDeclined, wantValue: errDeclined.Error()},
		{name: "string", value: "boom", wantValue: "boom"},
		{name: "pointer", value: &panicValue{reason: "boom"}, wantValue: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub, transport := newHub(t)
			h := sentryobs.Middleware(sentryobs.WithHub(hub))(func(*message.Message) ([]*message.Message, error) {
				panic(tt.value)
			})
			msg := newMessage(map[string]string{contract.NameKey: "ChargeCard"})

			got := func() (v any) {
				defer func() { v = recover() }()
				_, _ = h(msg)
				return nil
			}()

			if got != tt.value {
				t.Errorf("re-raised %#v, want the handler's panic value %#v", got, tt.value)
			}
			events := transport.Events()
			if len(events) != 1 {
				t.Fatalf("captured %d events, want 1", len(events))
			}
			e := events[0]
			if e.Level != sentry.LevelFatal {
				t.Errorf("captured level %q, want %q", e.Level, sentry.LevelFatal)
			}
			if !strings.Contains(exceptionValue(e), tt.wantValue) {
				t.Errorf("captured %q, want it to name %q", exceptionValue(e), tt.wantValue)
			}
			if e.Tags[sentryobs.TagMessageType] != "ChargeCard" {
				t.Errorf("tag %s = %q, want ChargeCard", sentryobs.TagMessageType, e.Tags[sentryobs.TagMessageType])
			}
		})
	}
}

func TestMiddleware_panic_router_redelivers(t *testing.T) {
	hub, transport := newHub(t)
	handler, done := failOnce(func() { panic("boom") })

	runRouter(t, sentryobs.Middleware(sentryobs.WithHub(hub)), handler, newMessage(nil))
	// The router recovers the re-raised panic and nacks, as it would
	// without the middleware, so the message comes back.
	waitFor(t, done)

	events := transport.Events()
	if len(events) != 1 || events[0].Level != sentry.LevelFatal {
		t.Fatalf("captured %d events, want one fatal event", len(events))
	}
	if got := events[0].Tags[sentryobs.TagHandler]; got != routerHandler {
		t.Errorf("tag %s = %q, want %q", sentryobs.TagHandler, got, routerHandler)
	}
}

func TestMiddleware_goexit_is_not_a_panic(t *testing.T) {
	hub, transport := newHub(t)
	h := sentryobs.Middleware(sentryobs.WithHub(hub))(func(*message.Message) ([]*message.Message, error) {
		// What t.FailNow does inside a handler under test.
		runtime.Goexit()
		return nil, nil
	})

	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		_, _ = h(newMessage(nil))
	}()

	if v := <-recovered; v != nil {
		t.Errorf("runtime.Goexit in the handler became a panic: %v", v)
	}
	if n := len(transport.Events()); n != 0 {
		t.Errorf("captured %d events for runtime.Goexit, want 0", n)
	}
}

func TestMiddleware_trace_link(t *testing.T) {
	hub, transport := newHub(t)
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	ctx, span := tp.Tracer("test").Start(context.Background(), "process orders")
	msg := newMessage(nil)
	msg.SetContext(ctx)
	h := sentryobs.Middleware(sentryobs.WithHub(hub))(func(*message.Message) ([]*message.Message, error) {
		return nil, errDeclined
	})
	_, _ = h(msg)
	span.End()

	ended := recorder.Ended()
	if len(ended) != 1 {
		t.Fatalf("recorded %d spans, want 1", len(ended))
	}
	wantTrace := ended[0].SpanContext().TraceID().String()
	wantSpan := ended[0].SpanContext().SpanID().String()
	events := transport.Events()
	if len(events) != 1 {
		t.Fatalf("captured %d events, want 1", len(events))
	}
	e := events[0]
	if got := e.Tags[sentryobs.TagTraceID]; got != wantTrace {
		t.Errorf("tag %s = %q, want the span's trace ID %q", sentryobs.TagTraceID, got, wantTrace)
	}
	traceCtx := e.Contexts["trace"]
	if got := fmt.Sprint(traceCtx["trace_id"]); got != wantTrace {
		t.Errorf("event trace context trace_id = %q, want %q", got, wantTrace)
	}
	if got := fmt.Sprint(traceCtx["span_id"]); got != wantSpan {
		t.Errorf("event trace context span_id = %q, want %q", got, wantSpan)
	}
}

func TestMiddleware_bounds_tag_values(t *testing.T) {
	hub, transport := newHub(t)
	huge := strings.Repeat("\xff", 1<<20)
	msg := newMessage(map[string]string{
		contract.NameKey:          huge,
		contract.MessageKindKey:   huge,
		contract.CorrelationIDKey: huge,
		contract.CausationIDKey:   huge,
	})
	h := sentryobs.Middleware(sentryobs.WithHub(hub))(func(*message.Message) ([]*message.Message, error) {
		return nil, errDeclined
	})

	if _, err := h(msg); err != errDeclined {
		t.Fatalf("handler returned %v, want %v", err, errDeclined)
	}

	events := transport.Events()
	if len(events) != 1 {
		t.Fatalf("captured %d events, want 1", len(events))
	}
	e := events[0]
	if e.Tags[sentryobs.TagMessageType] == "" {
		t.Errorf("tag %s missing", sentryobs.TagMessageType)
	}
	if got := e.Tags[sentryobs.TagMessageKind]; got != contract.KindMessage {
		t.Errorf("tag %s = %q, want %q for an unknown kind", sentryobs.TagMessageKind, got, contract.KindMessage)
	}
	for k, v := range e.Tags {
		if len(v) > sentryobs.TagValueLimit || !utf8.ValidString(v) {
			t.Errorf("tag %s is %d bytes, valid UTF-8 %v; want at most %d bytes of valid UTF-8",
				k, len(v), utf8.ValidString(v), sentryobs.TagValueLimit)
		}
	}
	if _, ok := e.Tags[sentryobs.TagCorrelationID]; ok {
		t.Errorf("a malformed correlation ID became a tag")
	}
	if _, ok := e.Contexts[sentryobs.ContextMessage]["causation_id"]; ok {
		t.Errorf("a malformed causation ID reached the message context")
	}
}

// logRecords parses JSON log lines.
func logRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var records []map[string]any
	for line := range strings.Lines(buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		records = append(records, r)
	}
	return records
}

func TestMiddleware_sentry_failures_do_not_fail_the_message(t *testing.T) {
	failures := []struct {
		name      string
		client    func(*sentry.ClientOptions)
		opts      []sentryobs.Option
		wantPanic string
	}{
		{
			name:      "transport panics",
			client:    func(o *sentry.ClientOptions) { o.Transport = &panicTransport{} },
			wantPanic: "transport exploded",
		},
		{
			name: "BeforeSend panics",
			client: func(o *sentry.ClientOptions) {
				o.BeforeSend = func(*sentry.Event, *sentry.EventHint) *sentry.Event { panic("before send exploded") }
			},
			wantPanic: "before send exploded",
		},
		{
			name:      "error filter panics",
			opts:      []sentryobs.Option{sentryobs.WithIgnoreErrors(func(error) bool { panic("filter exploded") })},
			wantPanic: "filter exploded",
		},
	}
	handlers := []struct {
		name    string
		handler message.HandlerFunc
		// wantErr and wantPanic are what the caller must see.
		wantErr   error
		wantPanic any
		wantLog   bool
	}{
		{
			name:    "success",
			handler: func(*message.Message) ([]*message.Message, error) { return nil, nil },
		},
		{
			name:    "error",
			handler: func(*message.Message) ([]*message.Message, error) { return nil, errDeclined },
			wantErr: errDeclined,
			wantLog: true,
		},
		{
			name:      "panic",
			handler:   func(*message.Message) ([]*message.Message, error) { panic(errDeclined) },
			wantPanic: errDeclined,
		},
	}
	for _, f := range failures {
		for _, hh := range handlers {
			t.Run(f.name+"/"+hh.name, func(t *testing.T) {
				if f.client == nil && hh.wantPanic != nil {
					t.Skip("the error filter does not see panics")
				}
				var clientOpts []func(*sentry.ClientOptions)
				if f.client != nil {
					clientOpts = append(clientOpts, f.client)
				}
				hub, _ := newHub(t, clientOpts...)
				var logs bytes.Buffer
				opts := append([]sentryobs.Option{
					sentryobs.WithHub(hub),
					sentryobs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
				}, f.opts...)
				h := sentryobs.Middleware(opts...)(hh.handler)

				var err error
				recovered := func() (v any) {
					defer func() { v = recover() }()
					_, err = h(newMessage(nil))
					return nil
				}()

				if recovered != hh.wantPanic {
					t.Errorf("caller saw panic %#v, want %#v", recovered, hh.wantPanic)
				}
				if err != hh.wantErr {
					t.Errorf("caller saw error %v, want %v", err, hh.wantErr)
				}
				records := logRecords(t, &logs)
				wantLog := hh.wantLog || hh.wantPanic != nil
				if !wantLog {
					if len(records) != 0 {
						t.Errorf("logged %v, want nothing", records)
					}
					return
				}
				if len(records) != 1 {
					t.Fatalf("logged %d records, want 1", len(records))
				}
				r := records[0]
				if r["level"] != "ERROR" || r["msg"] != "sentryobs: cannot capture to sentry" {
					t.Errorf("logged %v, want an ERROR about the failed capture", r)
				}
				if got, _ := r["panic"].(string); !strings.Contains(got, f.wantPanic) {
					t.Errorf("logged panic %q, want it to contain %q", got, f.wantPanic)
				}
			})
		}
	}
}

func TestMiddleware_hub_per_message(t *testing.T) {
	parent, transport := newHub(t)
	var inHandler *sentry.Hub
	h := sentryobs.Middleware(sentryobs.WithHub(parent))(func(msg *message.Message) ([]*message.Message, error) {
		inHandler = sentry.GetHubFromContext(msg.Context())
		if inHandler == nil {
			return nil, nil
		}
		if msg.Metadata.Get("order_id") != "" {
			inHandler.Scope().SetTag("order_id", msg.Metadata.Get("order_id"))
			inHandler.AddBreadcrumb(&sentry.Breadcrumb{Message: "charging order"}, nil)
		}
		return nil, errDeclined
	})

	_, _ = h(newMessage(map[string]string{
		contract.NameKey:          "OrderPlaced",
		contract.CorrelationIDKey: "corr-1",
		"order_id":                "order-1",
	}))
	first := inHandler
	_, _ = h(newMessage(map[string]string{contract.NameKey: "OrderShipped"}))
	parent.CaptureMessage("after the messages")

	if first == nil {
		t.Fatal("sentry.GetHubFromContext in the handler returned nil")
	}
	if first == parent || first == inHandler {
		t.Error("the handler's hub is not a clone per message")
	}
	events := transport.Events()
	if len(events) != 3 {
		t.Fatalf("captured %d events, want 3", len(events))
	}
	e1, e2, after := events[0], events[1], events[2]
	if e1.Tags["order_id"] != "order-1" || len(e1.Breadcrumbs) != 1 {
		t.Errorf("first event has tags %v and %d breadcrumbs, want the handler's order_id tag and breadcrumb",
			e1.Tags, len(e1.Breadcrumbs))
	}
	if e2.Tags[sentryobs.TagMessageType] != "OrderShipped" {
		t.Errorf("second event tag %s = %q, want OrderShipped", sentryobs.TagMessageType, e2.Tags[sentryobs.TagMessageType])
	}
	for _, k := range []string{"order_id", sentryobs.TagCorrelationID} {
		if v, ok := e2.Tags[k]; ok {
			t.Errorf("tag %s=%q of the first message leaked into the second", k, v)
		}
	}
	if len(e2.Breadcrumbs) != 0 {
		t.Errorf("breadcrumbs of the first message leaked into the second: %v", e2.Breadcrumbs)
	}
	for _, k := range []string{"order_id", sentryobs.TagMessageType, sentryobs.TagCorrelationID, sentryobs.TagMessageKind} {
		if v, ok := after.Tags[k]; ok {
			t.Errorf("tag %s=%q leaked into the parent hub's scope", k, v)
		}
	}
}

func TestMiddleware_concurrent_messages(t *testing.T) {
	hub, transport := newHub(t)
	h := sentryobs.Middleware(sentryobs.WithHub(hub))(func(msg *message.Message) ([]*message.Message, error) {
		sentry.GetHubFromContext(msg.Context()).Scope().SetTag("n", msg.Metadata.Get(contract.NameKey))
		return nil, errDeclined
	})

	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, _ = h(newMessage(map[string]string{contract.NameKey: fmt.Sprintf("Type%d", i)}))
		})
	}
	wg.Wait()

	events := transport.Events()
	if len(events) != n {
		t.Fatalf("captured %d events, want %d", len(events), n)
	}
	for _, e := range events {
		if e.Tags["n"] != e.Tags[sentryobs.TagMessageType] {
			t.Errorf("event of %s carries the handler tag of %s", e.Tags[sentryobs.TagMessageType], e.Tags["n"])
		}
	}
}

func TestMiddleware_without_client_passes_through(t *testing.T) {
	tests := []struct {
		name string
		hub  func() *sentry.Hub
	}{
		{name: "no client", hub: func() *sentry.Hub { return sentry.NewHub(nil, sentry.NewScope()) }},
		{name: "no-op client", hub: func() *sentry.Hub { return sentry.NewHub(sentry.NewNoopClient(), sentry.NewScope()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inHandler *sentry.Hub
			h := sentryobs.Middleware(sentryobs.WithHub(tt.hub()))(func(msg *message.Message) ([]*message.Message, error) {
				inHandler = sentry.GetHubFromContext(msg.Context())
				return nil, errDeclined
			})
			if _, err := h(newMessage(nil)); err != errDeclined {
				t.Errorf("handler returned %v, want %v", err, errDeclined)
			}
			if inHandler != nil {
				t.Error("a hub was put into the context although Sentry is not configured")
			}
		})
	}
}

func TestWithHub_nil_is_ignored(t *testing.T) {
	hub, transport := newHub(t)
	h := sentryobs.New(sentryobs.WithHub(hub), sentryobs.WithHub(nil), sentryobs.WithLogger(nil), nil).
		HandlerMiddleware()(func(*message.Message) ([]*message.Message, error) { return nil, errDeclined })

	_, _ = h(newMessage(nil))

	if n := len(transport.Events()); n != 1 {
		t.Errorf("captured %d events on the configured hub, want 1", n)
	}
}
