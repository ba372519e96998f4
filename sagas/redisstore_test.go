package sagas_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

func TestRedisStore(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) sagas.Store {
		client, prefix := testsvc.RedisPrefix(t)
		return newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix})
	})
}

func newRedisStore(t *testing.T, client redis.UniversalClient, config sagas.RedisStoreConfig) *sagas.RedisStore {
	t.Helper()
	s, err := sagas.NewRedisStore(client, config)
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	return s
}

func TestNewRedisStore_config(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: testsvc.RedisAddr()})
	t.Cleanup(func() { _ = client.Close() })
	tests := []struct {
		name    string
		client  redis.UniversalClient
		config  sagas.RedisStoreConfig
		wantErr string
	}{
		{name: "zero config", client: client},
		{name: "all set", client: client, config: sagas.RedisStoreConfig{Prefix: "p:", Buckets: 16384, HistoryLimit: 1}},
		{name: "nil client", wantErr: "client is required"},
		{name: "brace in prefix", client: client, config: sagas.RedisStoreConfig{Prefix: "a{b"}, wantErr: "Prefix"},
		{name: "closing brace in prefix", client: client, config: sagas.RedisStoreConfig{Prefix: "a}b"}, wantErr: "Prefix"},
		{name: "negative buckets", client: client, config: sagas.RedisStoreConfig{Buckets: -1}, wantErr: "Buckets"},
		{name: "too many buckets", client: client, config: sagas.RedisStoreConfig{Buckets: 16385}, wantErr: "Buckets"},
		{name: "negative history limit", client: client, config: sagas.RedisStoreConfig{HistoryLimit: -1}, wantErr: "HistoryLimit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sagas.NewRedisStore(tt.client, tt.config)
			if tt.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("NewRedisStore: %v, %v", s, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "invalid config") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewRedisStore: %v, want an invalid config error naming %q", err, tt.wantErr)
			}
		})
	}
}

// TestRedisStore_keysShareSlot checks the key layout: every key written for
// one instance, and the index keys of its bucket, are the documented ones
// and hash to one Redis Cluster slot.
func TestRedisStore_keysShareSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, prefix := testsvc.RedisPrefix(t)
	s := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix, Buckets: 7})

	inst := instance("order-42", 1)
	inst.Pending = []sagas.PendingMessage{{UUID: "c-1", Topic: "t"}}
	inst.Timeouts = []sagas.Timeout{{ID: "to-1", Name: "payment", Due: base, ScheduledAt: base}}
	save(t, s, inst)
	if ok, err := s.TryLock(ctx, sagaType, "order-42", "tok", time.Minute); err != nil || !ok {
		t.Fatalf("TryLock: %v, %v", ok, err)
	}

	tag := fmt.Sprintf("{%s:%d}", sagaType, fnv1a("order-42")%7)
	want := []string{
		prefix + tag + ":active",
		prefix + tag + ":hist:order-42",
		prefix + tag + ":inst:order-42",
		prefix + tag + ":lock:order-42",
		prefix + tag + ":pending",
		prefix + tag + ":timeouts",
	}
	got, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS: %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("keys:\n got %q\nwant %q", got, want)
	}
	slot := keySlot(want[0])
	for _, k := range got {
		if keySlot(k) != slot {
			t.Errorf("key %q is in slot %d, %q in %d", k, keySlot(k), want[0], slot)
		}
	}

	// The indexes hold what the documentation says.
	if m, _ := client.ZRangeWithScores(ctx, prefix+tag+":timeouts", 0, -1).Result(); len(m) != 1 ||
		m[0].Member != "order-42\x00to-1" || int64(m[0].Score) != base.UnixMilli() {
		t.Errorf("timeouts zset: %v", m)
	}
	if m, _ := client.ZRangeWithScores(ctx, prefix+tag+":active", 0, -1).Result(); len(m) != 1 ||
		m[0].Member != "order-42" || int64(m[0].Score) != base.UnixMilli() {
		t.Errorf("active zset: %v", m)
	}
	if ttl, _ := client.PTTL(ctx, prefix+tag+":lock:order-42").Result(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("lock TTL %v, want within (0, 1m]", ttl)
	}
}

// fnv1a is FNV-1a 32, written out so that the test does not share the
// store's code.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestFNV1a(t *testing.T) {
	h := fnv.New32a()
	_, _ = h.Write([]byte("order-42"))
	if fnv1a("order-42") != h.Sum32() {
		t.Fatal("fnv1a disagrees with hash/fnv")
	}
}

// keySlot is the Redis Cluster slot of key: CRC16-XMODEM of its hash tag
// (or of the whole key) mod 16384, as in the cluster specification.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func TestKeySlot(t *testing.T) {
	// Test vectors of the Redis Cluster specification.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	if keySlot("{user1000}.following") != keySlot("{user1000}.followers") {
		t.Error("keys with one hash tag in different slots")
	}
	if keySlot("foo{}{bar}") != int(crc16("foo{}{bar}")%16384) {
		t.Error("an empty tag must hash the whole key")
	}
}

// TestRedisStore_corrupt writes garbage into each field and checks that Load
// (and History) report a CorruptInstanceError naming the instance and the
// field, wrapping the cause.
func TestRedisStore_corrupt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, prefix := testsvc.RedisPrefix(t)
	s := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix, Buckets: 1})
	tag := prefix + "{" + sagaType + ":0}:"

	for _, tt := range []struct{ field, value string }{
		{"version", "x"},
		{"failures", "1.5"},
		{"processed", "[1,"},
		{"pending", "nope"},
		{"timeouts", `{"id":1}`},
		{"started_at", "yesterday"},
		{"updated_at", ""},
	} {
		t.Run(tt.field, func(t *testing.T) {
			id := "order-" + tt.field
			save(t, s, instance(id, 1))
			if err := client.HSet(ctx, tag+"inst:"+id, tt.field, tt.value).Err(); err != nil {
				t.Fatalf("HSET: %v", err)
			}
			_, found, err := s.Load(ctx, sagaType, id)
			var corrupt *sagas.CorruptInstanceError
			if !errors.As(err, &corrupt) || corrupt.Field != tt.field || corrupt.ID != id || corrupt.Type != sagaType {
				t.Fatalf("Load: %v (found=%v), want a CorruptInstanceError for field %s", err, found, tt.field)
			}
			if errors.Unwrap(err) == nil || !strings.Contains(err.Error(), sagaType+"/"+id) {
				t.Errorf("error %q does not name the instance or wrap the cause", err)
			}
		})
	}

	t.Run("missing field", func(t *testing.T) {
		save(t, s, instance("order-missing", 1))
		client.HDel(ctx, tag+"inst:order-missing", "status")
		_, _, err := s.Load(ctx, sagaType, "order-missing")
		var corrupt *sagas.CorruptInstanceError
		if !errors.As(err, &corrupt) || corrupt.Field != "status" {
			t.Fatalf("Load: %v, want a CorruptInstanceError for field status", err)
		}
	})

	t.Run("history", func(t *testing.T) {
		save(t, s, instance("order-h", 1))
		client.RPush(ctx, tag+"hist:order-h", "{not json")
		_, err := s.History(ctx, sagaType, "order-h")
		var corrupt *sagas.CorruptInstanceError
		if !errors.As(err, &corrupt) || corrupt.Field != "history[1]" {
			t.Fatalf("History: %v, want a CorruptInstanceError for history[1]", err)
		}
	})

	t.Run("scripts refuse corrupt fields", func(t *testing.T) {
		save(t, s, instance("order-s", 1))
		client.HSet(ctx, tag+"inst:order-s", "timeouts", "[", "pending", "{")
		if err := s.Save(ctx, sagas.SaveRequest{Instance: instance("order-s", 2), Expected: 1}); err == nil ||
			errors.Is(err, sagas.ErrConflict) || !strings.Contains(err.Error(), "timeouts") {
			t.Errorf("Save over corrupt timeouts: %v, want an error naming timeouts", err)
		}
		if err := s.MarkSent(ctx, sagaType, "order-s", []string{"c-1"}); err == nil || !strings.Contains(err.Error(), "pending") {
			t.Errorf("MarkSent over corrupt pending: %v, want an error naming pending", err)
		}
		client.HSet(ctx, tag+"inst:order-s", "version", "x")
		if err := s.Save(ctx, sagas.SaveRequest{Instance: instance("order-s", 2), Expected: 1}); err == nil || errors.Is(err, sagas.ErrConflict) {
			t.Errorf("Save over a corrupt version: %v, want an error other than ErrConflict", err)
		}
	})
}

func TestRedisStore_historyLimit(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	for _, tt := range []struct {
		name    string
		config  int
		steps   int64
		wantMin int64
	}{
		{name: "default", config: 0, steps: 103, wantMin: 4},
		{name: "configured", config: 3, steps: 5, wantMin: 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix + tt.name + ":", HistoryLimit: tt.config})
			var want []int64
			for v := int64(1); v <= tt.steps; v++ {
				save(t, s, instance("order-1", v))
				if v >= tt.wantMin {
					want = append(want, v)
				}
			}
			assertHistoryVersions(t, s, "order-1", want...)
		})
	}
}

func TestRedisStore_invalidNames(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	s := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix})
	ctx := context.Background()
	for _, tt := range []struct{ name, sagaType, id string }{
		{"empty type", "", "order-1"},
		{"empty id", sagaType, ""},
		{"brace in type", "Order{Saga", "order-1"},
		{"closing brace in type", "Order}Saga", "order-1"},
		{"brace in id", sagaType, "order{1"},
		{"closing brace in id", sagaType, "order}1"},
		{"NUL in id", sagaType, "order\x001"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inst := instance(tt.id, 1)
			inst.Type = tt.sagaType
			calls := map[string]error{
				"Save":     s.Save(ctx, sagas.SaveRequest{Instance: inst, Record: record(1)}),
				"MarkSent": s.MarkSent(ctx, tt.sagaType, tt.id, []string{"c"}),
			}
			_, _, calls["Load"] = s.Load(ctx, tt.sagaType, tt.id)
			_, calls["History"] = s.History(ctx, tt.sagaType, tt.id)
			_, calls["TryLock"] = s.TryLock(ctx, tt.sagaType, tt.id, "tok", time.Second)
			_, calls["Unlock"] = s.Unlock(ctx, tt.sagaType, tt.id, "tok")
			if tt.sagaType != sagaType {
				_, calls["WithPending"] = s.WithPending(ctx, tt.sagaType, 1)
				_, calls["DueTimeouts"] = s.DueTimeouts(ctx, tt.sagaType, time.Now(), 1)
				_, _, calls["Active"] = s.Active(ctx, tt.sagaType)
			}
			for method, err := range calls {
				if err == nil || !strings.HasPrefix(err.Error(), "sagas: ") {
					t.Errorf("%s: %v, want a sagas error", method, err)
				}
			}
		})
	}
	keys, err := client.Keys(ctx, prefix+"*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("keys written for invalid names: %q, %v", keys, err)
	}
	if _, err := s.TryLock(ctx, sagaType, "order-1", "", time.Second); err == nil {
		t.Error("TryLock with an empty token: no error")
	}
	if _, err := s.TryLock(ctx, sagaType, "order-1", "tok", time.Microsecond); err == nil {
		t.Error("TryLock with a ttl under a millisecond: no error")
	}
}

// TestRedisStore_unreachable checks that every method returns the Redis
// error, wrapped, when the server cannot be reached.
func TestRedisStore_unreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	s := newRedisStore(t, client, sagas.RedisStoreConfig{})
	ctx := context.Background()

	calls := map[string]error{
		"Save":     s.Save(ctx, sagas.SaveRequest{Instance: instance("order-1", 1), Record: record(1)}),
		"MarkSent": s.MarkSent(ctx, sagaType, "order-1", []string{"c"}),
	}
	_, _, calls["Load"] = s.Load(ctx, sagaType, "order-1")
	_, calls["History"] = s.History(ctx, sagaType, "order-1")
	_, calls["TryLock"] = s.TryLock(ctx, sagaType, "order-1", "tok", time.Second)
	_, calls["Unlock"] = s.Unlock(ctx, sagaType, "order-1", "tok")
	_, calls["WithPending"] = s.WithPending(ctx, sagaType, 1)
	_, calls["DueTimeouts"] = s.DueTimeouts(ctx, sagaType, time.Now(), 1)
	_, _, calls["Active"] = s.Active(ctx, sagaType)
	for method, err := range calls {
		var opErr *net.OpError
		if !errors.As(err, &opErr) || !strings.HasPrefix(err.Error(), "sagas: ") {
			t.Errorf("%s: %v, want a wrapped network error", method, err)
		}
	}
}
