package sagas

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// fuzzFields are the fields of the instance hash in the order of
// FuzzDecodeFields' arguments; bit i of its missing argument drops
// fuzzFields[i] from the hash.
var fuzzFields = [...]string{
	fieldVersion, fieldStatus, fieldOutcome, fieldState, fieldProcessed, fieldPending,
	fieldTimeouts, fieldFailures, fieldLastError, fieldStartedAt, fieldUpdatedAt,
}

// fuzzInstances are instances as the manager saves them.
func fuzzInstances() []Instance {
	started := time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)
	cet := time.FixedZone("CET", 3600)
	return []Instance{
		{
			Type: "OrderSaga", ID: "order-1", Version: 1, Status: "awaiting_payment",
			State:     []byte(`{"order_id":"order-1","amount":4200}`),
			Processed: []string{"0b5d2a4e-1f3c-4e8a-9d7b-2c6f8e1a3b5d"},
			Pending: []PendingMessage{{
				UUID:     "6f1c2e3d-4b5a-4978-8c6d-5e4f3a2b1c0d",
				Topic:    "shop.commands.ChargeCard",
				Metadata: map[string]string{"name": "ChargeCard", "correlation_id": "corr-42", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
				Payload:  []byte(`{"order_id":"order-1","amount":4200}`),
			}, {
				UUID:     "7a2d3e4f-5b6c-4d8e-9f0a-1b2c3d4e5f60",
				Topic:    "shop.commands.ReserveStock",
				Metadata: map[string]string{"name": "ReserveStock"},
				Payload:  []byte{0x00, 0xff, '"', '\\'},
			}},
			Timeouts: []Timeout{{
				ID: "payment-1", Name: "payment",
				Due:         started.Add(15 * time.Minute).In(cet),
				ScheduledAt: started,
				Trace:       map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage": "tenant=7"},
			}},
			StartedAt: started, UpdatedAt: started,
		},
		{
			Type: "OrderSaga", ID: "order-2", Version: 7, Status: "done", Outcome: OutcomeCompensated,
			State:     []byte("\x00binary\xff"),
			Processed: []string{"e-1", "e-2", "timeout:payment-1"},
			Failures:  2, LastError: "payment declined: card \"4242\" expired",
			StartedAt: started, UpdatedAt: started.Add(time.Hour),
		},
		{Type: "OrderSaga", ID: "order-3", Version: 1, Status: "started", StartedAt: started, UpdatedAt: started},
	}
}

// hashOf is the hash HGETALL returns after HSET of fields (encodeFields'
// result).
func hashOf(t testing.TB, fields []any) map[string]string {
	t.Helper()
	h := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		k := fields[i].(string)
		switch v := fields[i+1].(type) {
		case string:
			h[k] = v
		case []byte:
			h[k] = string(v)
		default:
			t.Fatalf("field %s: unexpected value type %T", k, v)
		}
	}
	return h
}

// addHash adds h as a seed of FuzzDecodeFields, with no field missing.
func addHash(f *testing.F, h map[string]string) {
	f.Add(h[fieldVersion], h[fieldStatus], h[fieldOutcome], h[fieldState], h[fieldProcessed], h[fieldPending],
		h[fieldTimeouts], h[fieldFailures], h[fieldLastError], h[fieldStartedAt], h[fieldUpdatedAt], uint16(0))
}

// redisSeeds returns the hashes Redis holds after the store saved the
// instances and sent the first pending message of each (MarkSent rewrites
// the pending field in Lua, with cjson).
func redisSeeds(f *testing.F, insts []Instance) []map[string]string {
	client, prefix := testsvc.RedisPrefix(f)
	store, err := NewRedisStore(client, RedisStoreConfig{Prefix: prefix})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	var hashes []map[string]string
	for _, inst := range insts {
		inst.Version = 1 // a first save
		if err := store.Save(ctx, SaveRequest{Instance: inst}); err != nil {
			f.Fatal(err)
		}
		if len(inst.Pending) > 0 {
			if err := store.MarkSent(ctx, inst.Type, inst.ID, []string{inst.Pending[0].UUID}); err != nil {
				f.Fatal(err)
			}
		}
		h, err := client.HGetAll(ctx, store.keys(inst.Type, inst.ID).inst).Result()
		if err != nil {
			f.Fatal(err)
		}
		want := copyInstance(inst)
		if len(want.Pending) > 0 {
			want.Pending = want.Pending[1:]
		}
		got, err := decodeFields(inst.Type, inst.ID, h)
		if err != nil {
			f.Fatalf("the hash Redis holds for %s does not decode: %v", inst.ID, err)
		}
		if !sameInstance(got, want) {
			f.Fatalf("the hash Redis holds for %s decodes to\n%+v\nwant\n%+v", inst.ID, got, want)
		}
		hashes = append(hashes, h)
	}
	return hashes
}

// FuzzDecodeFields fuzzes the decoding of a saga instance from its Redis
// hash (RedisStore.Load, History's instance): the fields as strings, and a
// mask of fields missing from the hash.
func FuzzDecodeFields(f *testing.F) {
	insts := fuzzInstances()
	for _, inst := range insts {
		fields, err := encodeFields(inst)
		if err != nil {
			f.Fatal(err)
		}
		addHash(f, hashOf(f, fields))
	}
	for _, h := range redisSeeds(f, insts) {
		addHash(f, h)
	}
	// Damaged hashes: a field missing, values of the wrong shape.
	fields, _ := encodeFields(insts[0])
	h := hashOf(f, fields)
	f.Add(h[fieldVersion], h[fieldStatus], h[fieldOutcome], h[fieldState], h[fieldProcessed], h[fieldPending],
		h[fieldTimeouts], h[fieldFailures], h[fieldLastError], h[fieldStartedAt], h[fieldUpdatedAt], uint16(1<<6))
	f.Add("x", "s", "", "", "null", "{}", `[{"due":"yesterday"}]`, "1e3", "", "2026-13-01T00:00:00Z", "", uint16(0))
	f.Add("1", "s", "", "", `["a",null]`, `[{"payload":"not base64!"}]`, "[]", "0", "", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999-23:59", uint16(0))

	f.Fuzz(func(t *testing.T, version, status, outcome, state, processed, pending, timeouts, failures, lastError, startedAt, updatedAt string, missing uint16) {
		values := [...]string{version, status, outcome, state, processed, pending, timeouts, failures, lastError, startedAt, updatedAt}
		h := make(map[string]string, len(values))
		for i, v := range values {
			if missing&(1<<i) == 0 {
				h[fuzzFields[i]] = v
			}
		}
		inst, err := decodeFields("OrderSaga", "order-1", h)
		if err != nil {
			var corrupt *CorruptInstanceError
			if !errors.As(err, &corrupt) {
				t.Fatalf("error %v (%T) is not a *CorruptInstanceError", err, err)
			}
			if corrupt.Type != "OrderSaga" || corrupt.ID != "order-1" || corrupt.Field == "" || corrupt.Err == nil {
				t.Fatalf("error %#v does not name the instance, the field and the cause", corrupt)
			}
			if !reflect.DeepEqual(inst, Instance{}) {
				t.Fatalf("a failed decode returned a half-built instance %+v", inst)
			}
			return
		}
		for i, name := range fuzzFields {
			if missing&(1<<i) != 0 {
				t.Fatalf("a hash without field %s decoded to %+v", name, inst)
			}
		}
		if inst.Type != "OrderSaga" || inst.ID != "order-1" {
			t.Fatalf("decoded instance is %s/%s", inst.Type, inst.ID)
		}
		again, err := encodeFields(inst)
		if err != nil {
			return // e.g. a time the store cannot write (year after 9999)
		}
		back, err := decodeFields(inst.Type, inst.ID, hashOf(t, again))
		if err != nil {
			t.Fatalf("the re-encoded instance does not decode: %v\n%+v", err, inst)
		}
		if !sameInstance(back, inst) {
			t.Fatalf("round trip changed the instance:\n%+v\nbecame\n%+v", inst, back)
		}
	})
}

// sameInstance reports whether a and b hold the same instance as a user
// sees it: times as instants, empty lists, maps and byte slices equal to
// absent ones.
func sameInstance(a, b Instance) bool {
	return reflect.DeepEqual(normalInstance(a), normalInstance(b))
}

func normalInstance(in Instance) Instance {
	in = copyInstance(in)
	in.StartedAt, in.UpdatedAt = in.StartedAt.UTC(), in.UpdatedAt.UTC()
	if len(in.State) == 0 {
		in.State = nil
	}
	if len(in.Processed) == 0 {
		in.Processed = nil
	}
	if len(in.Pending) == 0 {
		in.Pending = nil
	}
	for i := range in.Pending {
		p := &in.Pending[i]
		if len(p.Metadata) == 0 {
			p.Metadata = nil
		}
		if len(p.Payload) == 0 {
			p.Payload = nil
		}
	}
	if len(in.Timeouts) == 0 {
		in.Timeouts = nil
	}
	for i := range in.Timeouts {
		to := &in.Timeouts[i]
		to.Due, to.ScheduledAt = to.Due.UTC(), to.ScheduledAt.UTC()
		if len(to.Trace) == 0 {
			to.Trace = nil
		}
	}
	return in
}
