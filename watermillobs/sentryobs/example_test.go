package sentryobs_test

import (
	"errors"
	"fmt"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/getsentry/sentry-go"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs"
)

func Example() {
	// A real program calls sentry.Init and uses sentryobs.New() with the
	// default hub. Here events stay in memory.
	transport := &sentry.MockTransport{}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:       "https://public@example.com/1",
		Transport: transport,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	capture := sentryobs.New(sentryobs.WithHub(sentry.NewHub(client, sentry.NewScope())))

	handler := capture.HandlerMiddleware()(func(msg *message.Message) ([]*message.Message, error) {
		// The message's own hub, for breadcrumbs that end up in its events.
		sentry.GetHubFromContext(msg.Context()).AddBreadcrumb(&sentry.Breadcrumb{Message: "charging card"}, nil)
		return nil, errors.New("payment declined")
	})

	msg := message.NewMessage("0b5d2a4e-1f3c-4e8a-9d7b-2c6f8e1a3b5d", []byte(`{"order_id":"o-1"}`))
	msg.Metadata.Set(contract.NameKey, "OrderPlaced")
	msg.Metadata.Set(contract.MessageKindKey, contract.KindEvent)
	msg.Metadata.Set(contract.CorrelationIDKey, "corr-42")

	_, err = handler(msg)
	fmt.Println("handler returned:", err)

	for _, event := range transport.Events() {
		fmt.Println("captured:", event.Exception[0].Value)
		for _, tag := range []string{sentryobs.TagMessageType, sentryobs.TagMessageKind, sentryobs.TagCorrelationID} {
			fmt.Printf("  %s=%s\n", tag, event.Tags[tag])
		}
		fmt.Println("  breadcrumb:", event.Breadcrumbs[0].Message)
	}
	// Output:
	// handler returned: payment declined
	// captured: payment declined
	//   cqrs.message_type=OrderPlaced
	//   message_kind=event
	//   correlation_id=corr-42
	//   breadcrumb: charging card
}
