package watermillobs_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// shopTemplate maps the shop's per-request topics to their template.
func shopTemplate(topic string) string {
	if strings.HasPrefix(topic, "shop.session.") {
		return "shop.session.*"
	}
	return ""
}

// 25,000 reply topics make a handful of span and operation names, and take
// no topic label slot from real topics.
func TestPublisher_per_request_topics_stay_low_cardinality(t *testing.T) {
	rec, tp, opts := newTracing(t)
	reg := frameworkRegistry(t, tp)
	var mu sync.Mutex
	opNames := map[string]bool{}
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		mu.Lock()
		opNames[op.Name] = true
		mu.Unlock()
		return next(ctx)
	}))
	promReg := prometheus.NewRegistry()
	metrics, err := promobs.New(promReg, promobs.WithTopicTemplate(shopTemplate))
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, watermillobs.WithHookRegistry(reg), watermillobs.WithTopicTemplate(shopTemplate))
	pub := watermillobs.NewPublisher(metrics.DecoratePublisher(&fakePublisher{}), opts...)

	const replies = 25000
	for i := range replies {
		m := message.NewMessage(watermill.NewUUID(), nil)
		m.Metadata.Set(contract.MessageKindKey, contract.KindReply)
		if err := pub.Publish(fmt.Sprintf("shop.reply.%d", i), m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if err := pub.Publish(fmt.Sprintf("shop.session.%d", i), message.NewMessage(watermill.NewUUID(), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish("orders", message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatal(err)
	}

	spanNames := map[string]bool{}
	for _, s := range rec.Ended() {
		spanNames[s.Name()] = true
	}
	wantSpans := map[string]bool{"send (temporary)": true, "send shop.session.*": true, "send orders": true}
	if len(spanNames) != len(wantSpans) {
		t.Errorf("%d distinct span names, want %d: %v", len(spanNames), len(wantSpans), keys(spanNames, 5))
	}
	for n := range wantSpans {
		if !spanNames[n] {
			t.Errorf("no span named %q", n)
		}
	}
	wantOps := map[string]bool{"publisher.publish.(temporary)": true, "publisher.publish.shop.session.*": true, "publisher.publish.orders": true}
	if len(opNames) != len(wantOps) {
		t.Errorf("%d distinct operation names, want %d: %v", len(opNames), len(wantOps), keys(opNames, 5))
	}

	// The raw topic stays in messaging.destination.name, with the template
	// and the temporary flag beside it.
	last := rec.Ended()[replies-1]
	if v, _ := spanAttr(last, "messaging.destination.name"); v.AsString() != fmt.Sprintf("shop.reply.%d", replies-1) {
		t.Errorf("messaging.destination.name = %q", v.AsString())
	}
	if v, _ := spanAttr(last, "messaging.destination.temporary"); !v.AsBool() {
		t.Error("messaging.destination.temporary not set")
	}
	if v, _ := spanAttr(last, "messaging.destination.template"); v.AsString() != contract.TemporaryDestination {
		t.Errorf("messaging.destination.template = %q", v.AsString())
	}

	topics := publishedTopics(t, promReg)
	for _, want := range []string{contract.TemporaryDestination, "shop.session.*", "orders"} {
		if !topics[want] {
			t.Errorf("no watermill_messages_published_total series for topic %q; topics %v", want, keys(topics, 5))
		}
	}
	if topics["other"] {
		t.Error("a real topic was folded into other: replies took the label slots")
	}
}

// The process span of a message consumed from a per-request topic is named
// by the template.
func TestTracing_topic_template(t *testing.T) {
	rec, _, opts := newTracing(t)
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = gc.Close() })
	r := testsvc.NewRouter(t)
	if err := watermillobs.Instrument(r, watermillobs.InstrumentConfig{}, append(opts, watermillobs.WithTopicTemplate(shopTemplate))...); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 1)
	r.AddConsumerHandler("session", "shop.session.42", gc, func(*message.Message) error {
		done <- struct{}{}
		return nil
	})
	testsvc.RunRouter(t, r)
	if err := gc.Publish("shop.session.42", message.NewMessage(watermill.NewUUID(), nil)); err != nil {
		t.Fatal(err)
	}
	<-done
	waitEnded(t, rec, 1)
	s := rec.Ended()[0]
	if s.Name() != "process shop.session.*" {
		t.Errorf("span name = %q, want process shop.session.*", s.Name())
	}
	if v, _ := spanAttr(s, "messaging.destination.name"); v.AsString() != "shop.session.42" {
		t.Errorf("messaging.destination.name = %q", v.AsString())
	}
}

func publishedTopics(t *testing.T, g prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	topics := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "watermill_messages_published_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" {
					topics[l.GetValue()] = true
				}
			}
		}
	}
	return topics
}

func keys(m map[string]bool, n int) []string {
	var out []string
	for k := range m {
		if len(out) == n {
			break
		}
		out = append(out, k)
	}
	return out
}
