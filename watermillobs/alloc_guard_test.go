package watermillobs_test

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// readmeAllocsPerMessage is the allocation budget of one message through
// the README setup on gochannel (BENCHMARKS.md, "Allocation guard"): the
// publisher through the metrics decorator and NewPublisher, the router
// instrumented with the promobs backend, logging to io.Discard, spans
// recorded and dropped. The count covers every goroutine of the process:
// the publisher's, the router's and the SDK's.
const readmeAllocsPerMessage = 73

// TestAllocs_readme_setup fails when a change makes the README setup
// allocate more per message than BENCHMARKS.md records. It runs without
// -race (make test runs the TestAllocs pins on their own), since the race
// detector allocates.
func TestAllocs_readme_setup(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates; make test runs this pin without -race")
	}
	res := readmeAllocs(t, nil)
	got := res.AllocsPerOp()
	t.Logf("README setup on gochannel: %d allocs/msg, %d B/msg (budget %d allocs)", got, res.AllocedBytesPerOp(), readmeAllocsPerMessage)
	if got > readmeAllocsPerMessage {
		t.Errorf("the README setup allocates %d times per message, over the %d that BENCHMARKS.md records", got, readmeAllocsPerMessage)
	}

	doc, err := os.ReadFile("../BENCHMARKS.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "allocation guard: " + strconv.Itoa(readmeAllocsPerMessage) + " allocs/msg"; !strings.Contains(string(doc), want) {
		t.Errorf("BENCHMARKS.md does not record %q", want)
	}
}

// TestAllocs_default_hook_profile fails when installing the default
// framework hook profile makes the README setup allocate per message: its
// span hook covers publisher.publish.* and consumer.consume.*, whose send
// and process spans already stand for those operations, so the publisher
// and ConsumeHooks must not build them for it. The same holds for a span
// hook registered by hand under a name of the user's.
func TestAllocs_default_hook_profile(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates; make test runs this pin without -race")
	}
	without := readmeAllocs(t, nil).AllocsPerOp()
	installs := []struct {
		name    string
		install func(b *testing.B, reg *hooks.Registry) *hooks.Registration
	}{
		{"InstallFrameworkHooks", func(b *testing.B, reg *hooks.Registry) *hooks.Registration {
			g, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: benchTracerProvider(b)})
			if err != nil {
				b.Fatal(err)
			}
			return g
		}},
		{"NewSpanHook by hand", func(b *testing.B, reg *hooks.Registry) *hooks.Registration {
			return reg.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(benchTracerProvider(b))),
				hooks.WithName("my.spans"), hooks.WithOperations("consumer.consume.*", "publisher.publish.*"))
		}},
	}
	for _, in := range installs {
		t.Run(in.name, func(t *testing.T) {
			var spanHooks int
			with := readmeAllocs(t, func(b *testing.B, reg *hooks.Registry) {
				g := in.install(b, reg)
				b.Cleanup(g.Unregister)
				spanHooks = len(reg.Registrations())
			}).AllocsPerOp()
			t.Logf("README setup on gochannel: %d allocs/msg without the span hook, %d with it", without, with)
			if spanHooks != 1 {
				t.Fatalf("%d registrations, want the span hook", spanHooks)
			}
			if with > without {
				t.Errorf("the span hook adds %d allocs/msg to the README setup; it has nothing to do inside the send and process spans", with-without)
			}
		})
	}
}

// readmeAllocs runs the README setup on gochannel, with install run on its
// hook registry first when given, and returns the benchmark's result.
func readmeAllocs(t *testing.T, install func(b *testing.B, reg *hooks.Registry)) testing.BenchmarkResult {
	t.Helper()
	res := testing.Benchmark(func(b *testing.B) {
		var metrics *promobs.Metrics
		opts := readmeBenchOptions(b)
		if install != nil {
			reg := hooks.NewRegistry()
			opts = append(opts, watermillobs.WithHookRegistry(reg))
			install(b, reg)
		}
		br := newBenchRouter(b, func(b *testing.B, r *message.Router) {
			m, err := promobs.New(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			metrics = m
			err = watermillobs.Instrument(r, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{m}}, opts...)
			if err != nil {
				b.Fatal(err)
			}
		})
		defer br.stop()
		br.pub = watermillobs.NewPublisher(metrics.DecoratePublisher(br.pubSub), opts...)
		br.publish(b, 100) // warm the caches of the first message
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		br.publish(b, b.N)
	})
	if res.N == 0 {
		t.Fatal("the benchmark did not run")
	}
	return res
}

func readmeBenchOptions(b *testing.B) []watermillobs.Option {
	return []watermillobs.Option{
		watermillobs.WithTracerProvider(benchTracerProvider(b)),
		watermillobs.WithPropagators(w3c),
		watermillobs.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))),
		watermillobs.WithHookRegistry(hooks.NewRegistry()),
	}
}
