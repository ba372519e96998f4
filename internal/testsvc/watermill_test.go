package testsvc_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// A message published with RedisPublisher reaches a handler of a router run
// by RunRouter over RedisSubscriber, through the real server.
func TestRedisRouterRoundTrip(t *testing.T) {
	_, prefix := testsvc.RedisPrefix(t) // keys under prefix are deleted at the end
	topic := prefix + "roundtrip"
	router := testsvc.NewRouter(t)
	got := make(chan string, 1)
	router.AddConsumerHandler("roundtrip", topic, testsvc.RedisSubscriber(t, topic+".group"), func(msg *message.Message) error {
		got <- string(msg.Payload)
		return nil
	})
	testsvc.RunRouter(t, router)
	if err := testsvc.RedisPublisher(t).Publish(topic, message.NewMessage("m-1", []byte("hello"))); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "hello" {
			t.Errorf("payload %q", p)
		}
	case <-time.After(testsvc.RouterTimeout):
		t.Fatal("message not delivered")
	}
}
