package main

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The effects the services record: what a real stock, payment or shipping
// system would do once per order (reserve, charge, ship, release).
const (
	effectReserve = "reserve"
	effectCharge  = "charge"
	effectShip    = "ship"
	effectRelease = "release"
)

// effectLog is the services' record of what they did, kept idempotent by
// command UUID: a command delivered again (a redelivery after a crash, a
// recovery republishing a saga's pending command) finds its UUID applied
// and is only answered again. Beside the applied UUIDs it counts the
// effects per order and kind, so that an order charged by two different
// commands shows a count of 2 (the chaos test asserts 1 or 0).
type effectLog interface {
	// apply records the effect of command uuid on orderID, once: applied is
	// false when uuid was applied before.
	apply(ctx context.Context, kind, orderID, uuid, process string) (applied bool, err error)
}

// The keys of the effect log on Redis, under the run's prefix. They share
// the hash tag {effects}, so that on a Redis Cluster they live in one slot
// and applyEffect, which writes both, runs there (a script touching two
// slots fails with CROSSSLOT).
const (
	effectsAppliedKey = "{effects}:applied" // hash: command UUID -> "<kind>/<order ID> <process>"
	effectsCountKey   = "{effects}:count"   // hash: "<kind>/<order ID>" -> effects applied
)

// applyEffect marks the command applied and counts its effect, atomically.
var applyEffect = redis.NewScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3]) == 1 then
	redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
	return 1
end
return 0`)

// redisEffects is the effect log in Redis, shared by every worker.
type redisEffects struct {
	client redis.UniversalClient
	prefix string
}

func (e redisEffects) apply(ctx context.Context, kind, orderID, uuid, process string) (bool, error) {
	n, err := applyEffect.Run(ctx, e.client, []string{e.prefix + effectsAppliedKey, e.prefix + effectsCountKey},
		uuid, kind+"/"+orderID, process).Int()
	return n == 1, err
}

// memoryEffects is the effect log of the single process on GoChannel.
type memoryEffects struct {
	mu      sync.Mutex
	applied map[string]bool
	count   map[string]int
}

func (e *memoryEffects) apply(_ context.Context, kind, orderID, uuid, _ string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.applied == nil {
		e.applied, e.count = map[string]bool{}, map[string]int{}
	}
	if e.applied[uuid] {
		return false, nil
	}
	e.applied[uuid] = true
	e.count[kind+"/"+orderID]++
	return true, nil
}
