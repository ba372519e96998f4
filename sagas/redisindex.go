package sagas

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The global queries read every bucket of a saga type in one pipeline (one
// round trip per node on Redis Cluster) and merge the answers.

// WithPending implements [Store.WithPending]. It takes random members of
// each bucket's set, so that instances whose messages keep failing to
// publish do not hide the others behind a small limit. A limit of zero or
// less returns nothing.
func (s *RedisStore) WithPending(ctx context.Context, sagaType string, limit int) ([]string, error) {
	if err := checkType(sagaType); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringSliceCmd, s.buckets)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range s.buckets {
			cmds[b] = p.SRandMemberN(ctx, s.tagged(sagaType, b)+"pending", int64(limit))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sagas: cannot list %s instances with pending messages: %w", sagaType, err)
	}
	start := int(s.pendingStart.Add(1) % uint32(s.buckets))
	var ids []string
	for i := range s.buckets {
		for _, id := range cmds[(start+i)%s.buckets].Val() {
			if len(ids) == limit {
				return ids, nil
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// DueTimeouts implements [Store.DueTimeouts]. Due is read from the index,
// so it has millisecond precision (rounded up). A limit of zero or less
// returns nothing.
func (s *RedisStore) DueTimeouts(ctx context.Context, sagaType string, now time.Time, limit int) ([]DueTimeout, error) {
	if err := checkType(sagaType); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	by := &redis.ZRangeBy{
		Min:   "-inf",
		Max:   strconv.FormatInt(now.UnixMilli(), 10),
		Count: int64(limit),
	}
	cmds := make([]*redis.ZSliceCmd, s.buckets)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range s.buckets {
			cmds[b] = p.ZRangeByScoreWithScores(ctx, s.tagged(sagaType, b)+"timeouts", by)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sagas: cannot list due %s timeouts: %w", sagaType, err)
	}
	var due []DueTimeout
	for _, cmd := range cmds {
		for _, z := range cmd.Val() {
			member, _ := z.Member.(string)
			id, timeoutID, ok := strings.Cut(member, "\x00")
			if !ok {
				continue // not written by this store
			}
			due = append(due, DueTimeout{
				Type: sagaType, ID: id, TimeoutID: timeoutID,
				Due: time.UnixMilli(int64(z.Score)).UTC(),
			})
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := due[i], due[j]
		if !a.Due.Equal(b.Due) {
			return a.Due.Before(b.Due)
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.TimeoutID < b.TimeoutID
	})
	if len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

// Active implements [Store.Active]. oldest has millisecond precision.
func (s *RedisStore) Active(ctx context.Context, sagaType string) (int64, time.Time, error) {
	if err := checkType(sagaType); err != nil {
		return 0, time.Time{}, err
	}
	counts := make([]*redis.IntCmd, s.buckets)
	firsts := make([]*redis.ZSliceCmd, s.buckets)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range s.buckets {
			key := s.tagged(sagaType, b) + "active"
			counts[b] = p.ZCard(ctx, key)
			firsts[b] = p.ZRangeWithScores(ctx, key, 0, 0)
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("sagas: cannot count active %s instances: %w", sagaType, err)
	}
	var count int64
	oldest := math.Inf(1)
	for b := range s.buckets {
		count += counts[b].Val()
		if z := firsts[b].Val(); len(z) > 0 && z[0].Score < oldest {
			oldest = z[0].Score
		}
	}
	if count == 0 || math.IsInf(oldest, 1) {
		// The pipeline is not atomic: the last instance may end between
		// ZCARD and ZRANGE.
		return count, time.Time{}, nil
	}
	return count, time.UnixMilli(int64(oldest)).UTC(), nil
}
