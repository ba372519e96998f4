package watermillobs_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// decorate wraps pub and sub the way an instrumented application does:
// the publisher in promobs' decorator and in NewPublisher with the default
// framework hook profile, the subscriber in NewSubscriber. Spans are
// recorded (sampled, no exporter) so that the span code runs.
func decorate(t *testing.T, pub message.Publisher, sub message.Subscriber) (message.Publisher, message.Subscriber) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	reg := hooks.NewRegistry()
	opts := []watermillobs.Option{watermillobs.WithTracerProvider(tp), watermillobs.WithHookRegistry(reg)}
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp}); err != nil {
		t.Fatalf("cannot install framework hooks: %v", err)
	}
	metrics, err := promobs.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("cannot create metrics: %v", err)
	}
	return watermillobs.NewPublisher(metrics.DecoratePublisher(pub), opts...),
		watermillobs.NewSubscriber(sub, opts...)
}

func goChannelConstructor(preserveContext bool) tests.PubSubConstructor {
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
		pubSub := gochannel.NewGoChannel(gochannel.Config{
			OutputChannelBuffer: 10000,
			Persistent:          true,
			PreserveContext:     preserveContext,
		}, watermill.NopLogger{})
		return decorate(t, pubSub, pubSub)
	}
}

// The feature sets are those watermill's pubsub/gochannel/pubsub_test.go
// declares, plus ForceShort outside full runs.

func TestConformance_GoChannel_persistent(t *testing.T) {
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:        false,
		ExactlyOnceDelivery:   true,
		GuaranteedOrder:       false,
		Persistent:            false,
		RequireSingleInstance: true,
		ForceShort:            !testsvc.Full(),
	}, goChannelConstructor(false), nil)
}

func TestConformance_GoChannel_context_preserved(t *testing.T) {
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:        false,
		ExactlyOnceDelivery:   true,
		GuaranteedOrder:       false,
		Persistent:            false,
		RequireSingleInstance: true,
		ContextPreserved:      true,
		ForceShort:            !testsvc.Full(),
	}, goChannelConstructor(true), nil)
}

// TestConformance_RedisStream runs the suite on the real Redis with the
// feature set and subscriber settings of watermill-redisstream's own
// pkg/redisstream/pubsub_test.go. Topics carry a testsvc prefix, so their
// streams (and consumer groups) are deleted when the test ends.
func TestConformance_RedisStream(t *testing.T) {
	prefix := testsvc.Prefix(t)
	testsvc.CleanupKeys(t, testsvc.Redis(t), prefix)

	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: testsvc.Redis(t)}, watermill.NopLogger{})
		if err != nil {
			t.Fatalf("cannot create redisstream publisher: %v", err)
		}
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client:        testsvc.Redis(t),
			Consumer:      watermill.NewShortUUID(),
			ConsumerGroup: prefix + group,
			BlockTime:     10 * time.Millisecond,
			ClaimInterval: 3 * time.Second,
			MaxIdleTime:   5 * time.Second,
		}, watermill.NopLogger{})
		if err != nil {
			t.Fatalf("cannot create redisstream subscriber: %v", err)
		}
		return decorate(t, pub, sub)
	}
	constructor := func(t *testing.T) (message.Publisher, message.Subscriber) {
		return withGroup(t, watermill.NewShortUUID())
	}

	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    true,
		ForceShort:                          !testsvc.Full(),
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return prefix + "topic-" + string(tctx.TestID)
		},
	}, constructor, withGroup)
}
