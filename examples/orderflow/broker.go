package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// topics names the streams (topics) of one run, all under one prefix so
// that several demos or tests share a Redis.
type topics struct{ prefix string }

func (t topics) events() string                  { return t.prefix + "events" }
func (t topics) command(name string) string      { return t.prefix + "commands." + name }
func (t topics) reply(operationID string) string { return t.prefix + "replies." + operationID }
func (t topics) group(name string) string        { return t.prefix + name }

// broker is the Pub/Sub of a run: Watermill's GoChannel in one process, or
// Redis Streams shared by every process, and the saga store that goes with
// it.
type broker struct {
	publisher message.Publisher
	// subscriber returns the subscriber of a consumer group: on Redis every
	// process reading with the same group shares the messages.
	subscriber func(group string) (message.Subscriber, error)
	// replySubscriber returns a subscriber for one request/reply topic.
	replySubscriber func() (message.Subscriber, error)
	store           sagas.Store
	// redis is a *redis.Client, or a *redis.ClusterClient when REDIS_ADDR
	// names several seeds; nil on GoChannel.
	redis redis.UniversalClient
	// gochannel is the embedded broker; nil on Redis.
	gochannel *gochannel.GoChannel
	close     func() error
}

// newGoChannelBroker is the embedded broker: no server, one process.
func newGoChannelBroker(logger watermill.LoggerAdapter) *broker {
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 256}, logger)
	return &broker{
		publisher:       ps,
		subscriber:      func(string) (message.Subscriber, error) { return ps, nil },
		replySubscriber: func() (message.Subscriber, error) { return nopCloseSubscriber{ps}, nil },
		store:           sagas.NewMemoryStore(),
		gochannel:       ps,
		close:           ps.Close,
	}
}

// newRedisClient is a client of one Redis server at addr, or of a Redis
// Cluster when addr lists several seed nodes separated by commas
// ("127.0.0.1:7000,127.0.0.1:7001"): the cluster client finds the other
// nodes, follows the slots as they move, and reloads the slot map every
// few seconds, so that it finds the replica a failover promoted even while
// the dead master's address stays silent.
func newRedisClient(addr string) redis.UniversalClient {
	var seeds []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			seeds = append(seeds, a)
		}
	}
	if len(seeds) < 2 {
		return redis.NewClient(&redis.Options{Addr: addr})
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds, ClusterStateReloadInterval: 2 * time.Second})
}

// newRedisBroker is Redis Streams at addr (one server, or the seeds of a
// Redis Cluster): consumer groups named after the handlers, so that the
// workers share the work, and the saga state in Redis.
func newRedisBroker(ctx context.Context, addr string, t topics, consumer string, logger watermill.LoggerAdapter) (*broker, error) {
	client := newRedisClient(addr)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s (REDIS_ADDR): %w", addr, err)
	}
	// watermill-redisstream closes the client of a publisher or subscriber
	// that is closed: each gets a view whose Close does nothing, so that a
	// request/reply caller closing its reply subscriber leaves the others
	// running. The client itself is closed last.
	shared := sharedClient{client}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: shared}, logger)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	store, err := sagas.NewRedisStore(client, sagas.RedisStoreConfig{Prefix: t.prefix + "saga:"})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &broker{
		publisher: pub,
		subscriber: func(group string) (message.Subscriber, error) {
			return redisstream.NewSubscriber(redisstream.SubscriberConfig{
				Client:                        shared,
				ConsumerGroup:                 t.group(group),
				Consumer:                      consumer,
				BlockTime:                     100 * time.Millisecond,
				ClaimInterval:                 time.Second,
				MaxIdleTime:                   5 * time.Second,
				NackResendSleep:               100 * time.Millisecond,
				DisableIndefiniteInitialBlock: true,
			}, logger)
		},
		replySubscriber: func() (message.Subscriber, error) {
			// No consumer group: the caller alone reads its reply topic,
			// from its start, so a reply published before the first read is
			// not missed.
			return redisstream.NewSubscriber(redisstream.SubscriberConfig{
				Client:                        shared,
				FanOutOldestId:                "0",
				BlockTime:                     100 * time.Millisecond,
				DisableIndefiniteInitialBlock: true,
			}, logger)
		},
		store: store,
		redis: client,
		close: func() error {
			_ = pub.Close()
			return client.Close()
		},
	}, nil
}

// sharedClient is a Redis client that its users cannot close.
type sharedClient struct{ redis.UniversalClient }

// Close does nothing: the broker closes the client.
func (sharedClient) Close() error { return nil }

// nopCloseSubscriber keeps a shared GoChannel open when a request/reply
// caller closes its reply subscriber.
type nopCloseSubscriber struct{ message.Subscriber }

func (nopCloseSubscriber) Close() error { return nil }

// replySubscribers closes each request/reply subscriber once its call
// ended.
type replySubscribers struct {
	mu   sync.Mutex
	open map[string]message.Subscriber
}

func (r *replySubscribers) add(operationID string, s message.Subscriber) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		r.open = map[string]message.Subscriber{}
	}
	r.open[operationID] = s
}

func (r *replySubscribers) done(operationID string) {
	r.mu.Lock()
	s := r.open[operationID]
	delete(r.open, operationID)
	r.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}
