package watermillobs_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

type panickingProcessor struct{ onStart, onEnd bool }

func (p panickingProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {
	if p.onStart {
		panic("processor OnStart exploded")
	}
}

func (p panickingProcessor) OnEnd(sdktrace.ReadOnlySpan) {
	if p.onEnd {
		panic("processor OnEnd exploded")
	}
}
func (panickingProcessor) Shutdown(context.Context) error   { return nil }
func (panickingProcessor) ForceFlush(context.Context) error { return nil }

type panickingExporter struct{}

func (panickingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	panic("exporter exploded")
}
func (panickingExporter) Shutdown(context.Context) error { return nil }

// A broken tracing pipeline (span processor or synchronous exporter) never
// fails a message, a publish or an operation: the work runs once, its result
// is returned unchanged, and the panic is logged.
func TestBrokenTracingPipeline(t *testing.T) {
	pipelines := map[string]sdktrace.TracerProviderOption{
		"processor OnStart": sdktrace.WithSpanProcessor(panickingProcessor{onStart: true}),
		"processor OnEnd":   sdktrace.WithSpanProcessor(panickingProcessor{onEnd: true}),
		"exporter":          sdktrace.WithSyncer(panickingExporter{}),
	}
	errHandler := errors.New("handler failed")
	for name, pipeline := range pipelines {
		t.Run(name, func(t *testing.T) {
			tp := sdktrace.NewTracerProvider(pipeline)
			var logs bytes.Buffer
			opts := []watermillobs.Option{
				watermillobs.WithTracerProvider(tp),
				watermillobs.WithPropagators(w3c),
				watermillobs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
			}

			calls := 0
			produced, err := watermillobs.Tracing(watermillobs.TracingConfig{}, opts...)(func(*message.Message) ([]*message.Message, error) {
				calls++
				return []*message.Message{message.NewMessage("out", nil)}, errHandler
			})(message.NewMessage("in", nil))
			if calls != 1 || !errors.Is(err, errHandler) || len(produced) != 1 {
				t.Errorf("handler ran %d times, returned %d messages and %v", calls, len(produced), err)
			}

			fake := &fakePublisher{}
			pub := watermillobs.NewPublisher(fake, append(opts, watermillobs.WithHookRegistry(hooks.NewRegistry()))...)
			if err := pub.Publish("orders", message.NewMessage("p", nil)); err != nil || len(fake.calls) != 1 {
				t.Errorf("publish: %v, %d calls", err, len(fake.calls))
			}

			reg := hooks.NewRegistry()
			reg.MustRegister(watermillobs.NewSpanHook(opts...))
			ran := 0
			if err := reg.Run(context.Background(), "uow.commit", nil, func(context.Context) error { ran++; return nil }); err != nil || ran != 1 {
				t.Errorf("operation: %v, ran %d times", err, ran)
			}

			if !strings.Contains(logs.String(), "recovered panic in tracing pipeline") {
				t.Errorf("the broken pipeline was not logged: %s", logs.String())
			}
		})
	}
}
