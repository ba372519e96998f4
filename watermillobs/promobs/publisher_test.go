package promobs_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// fakePublisher fails for topics in fail and panics for topics in panics.
type fakePublisher struct {
	fail      map[string]error
	panics    map[string]any
	published int
	closed    bool
}

func (p *fakePublisher) Publish(topic string, msgs ...*message.Message) error {
	if v, ok := p.panics[topic]; ok {
		panic(v)
	}
	if err := p.fail[topic]; err != nil {
		return err
	}
	p.published += len(msgs)
	return nil
}

func (p *fakePublisher) Close() error {
	p.closed = true
	return nil
}

func TestDecoratePublisher(t *testing.T) {
	errBroker := errors.New("broker down")
	fake := &fakePublisher{fail: map[string]error{"payments": errBroker}}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m, reg := newMetrics(t, promobs.WithClock(stepClock(start, 20*time.Millisecond)))
	pub := m.DecoratePublisher(fake)

	if err := pub.Publish("orders", newMessage(), newMessage(), newMessage()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("orders", newMessage()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("payments", newMessage(), newMessage()); err != errBroker {
		t.Fatalf("Publish returned %v, want the publisher's error", err)
	}
	if err := pub.Publish("orders"); err != nil {
		t.Fatal(err)
	}
	if fake.published != 4 {
		t.Errorf("the decorated publisher got %d messages, want 4", fake.published)
	}
	if err := pub.Close(); err != nil || !fake.closed {
		t.Errorf("Close: %v, closed %v", err, fake.closed)
	}

	want := `
# HELP watermill_messages_published_total Messages passed to Watermill publishers, by topic and outcome of the Publish call.
# TYPE watermill_messages_published_total counter
watermill_messages_published_total{outcome="error",topic="payments"} 2
watermill_messages_published_total{outcome="success",topic="orders"} 4
# HELP watermill_publish_duration_seconds Duration of Watermill Publish calls, by topic.
# TYPE watermill_publish_duration_seconds histogram
watermill_publish_duration_seconds_bucket{topic="orders",le="0.005"} 0
watermill_publish_duration_seconds_bucket{topic="orders",le="0.01"} 0
watermill_publish_duration_seconds_bucket{topic="orders",le="0.025"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="0.05"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="0.1"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="0.25"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="0.5"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="1"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="2.5"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="5"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="10"} 2
watermill_publish_duration_seconds_bucket{topic="orders",le="+Inf"} 2
watermill_publish_duration_seconds_sum{topic="orders"} 0.04
watermill_publish_duration_seconds_count{topic="orders"} 2
watermill_publish_duration_seconds_bucket{topic="payments",le="0.005"} 0
watermill_publish_duration_seconds_bucket{topic="payments",le="0.01"} 0
watermill_publish_duration_seconds_bucket{topic="payments",le="0.025"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="0.05"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="0.1"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="0.25"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="0.5"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="1"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="2.5"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="5"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="10"} 1
watermill_publish_duration_seconds_bucket{topic="payments",le="+Inf"} 1
watermill_publish_duration_seconds_sum{topic="payments"} 0.02
watermill_publish_duration_seconds_count{topic="payments"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"watermill_messages_published_total", "watermill_publish_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestDecoratePublisher_panic(t *testing.T) {
	panicValue := errors.New("publisher bug")
	m, reg := newMetrics(t)
	pub := m.DecoratePublisher(&fakePublisher{panics: map[string]any{"orders": panicValue}})
	got := func() (v any) {
		defer func() { v = recover() }()
		_ = pub.Publish("orders", newMessage())
		return nil
	}()
	if got != any(panicValue) {
		t.Fatalf("recovered %v, want the publisher's panic value", got)
	}
	if v := value(t, reg, "watermill_messages_published_total", "topic", "orders", "outcome", "error"); v != 1 {
		t.Errorf("published error = %v, want 1", v)
	}
}

func TestDecoratePublisher_counts_once(t *testing.T) {
	m1, reg := newMetrics(t)
	m2, err := promobs.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	decorate := m2.PublisherDecorator()
	pub, err := decorate(m1.DecoratePublisher(&fakePublisher{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("orders", newMessage()); err != nil {
		t.Fatal(err)
	}
	if v := value(t, reg, "watermill_messages_published_total"); v != 1 {
		t.Errorf("published = %v, want 1", v)
	}
	if _, err := decorate(nil); err == nil {
		t.Error("decorating a nil publisher did not fail")
	}
	if m1.DecoratePublisher(nil) != nil {
		t.Error("DecoratePublisher(nil) is not nil")
	}
}

func TestDecoratePublisher_topics_capped(t *testing.T) {
	const limit = 10
	m, reg := newMetrics(t, promobs.WithMaxTopics(limit))
	pub := m.DecoratePublisher(&fakePublisher{})
	for i := range 100 {
		if err := pub.Publish(fmt.Sprintf("tenant-%d", i), newMessage()); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"watermill_messages_published_total", "watermill_publish_duration_seconds"} {
		if n, _ := testutil.GatherAndCount(reg, name); n != limit+1 {
			t.Errorf("%s has %d series, want %d", name, n, limit+1)
		}
	}
	if v := value(t, reg, "watermill_messages_published_total", "topic", "other"); v != 90 {
		t.Errorf("other = %v, want 90", v)
	}
}

func TestDecoratePublisher_exemplar(t *testing.T) {
	m, reg := newMetrics(t)
	pub := m.DecoratePublisher(&fakePublisher{})
	unsampled, _ := sampledContext(false)
	sampled, tid := sampledContext(true)
	first, second := newMessage(), newMessage()
	first.SetContext(unsampled)
	second.SetContext(sampled)
	if err := pub.Publish("orders", first, second); err != nil {
		t.Fatal(err)
	}
	e := find(t, reg, "watermill_messages_published_total").GetCounter().GetExemplar()
	if got := exemplarTraceID(t, e.GetLabel()); got != tid.String() || e.GetValue() != 2 {
		t.Errorf("counter exemplar = %q value %v, want %q value 2", got, e.GetValue(), tid)
	}
	var got string
	for _, b := range find(t, reg, "watermill_publish_duration_seconds").GetHistogram().GetBucket() {
		if e := b.GetExemplar(); e != nil {
			got = exemplarTraceID(t, e.GetLabel())
		}
	}
	if got != tid.String() {
		t.Errorf("histogram exemplar trace_id = %q, want %q", got, tid)
	}
}
