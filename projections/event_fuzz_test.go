package projections

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"reflect"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// Bits of FuzzDecodeEntry's shape argument.
const (
	shapeNoUUID     = 1 << iota // the entry has no uuid field
	shapeNoPayload              // no payload field
	shapeNoMetadata             // no metadata field
	shapeBytes                  // values are []byte, not strings
)

// fuzzEntryMessages are messages as applications publish them.
func fuzzEntryMessages() []*message.Message {
	placed := message.NewMessage("0b5d2a4e-1f3c-4e8a-9d7b-2c6f8e1a3b5d", []byte(`{"order_id":"o-1","amount":4200}`))
	placed.Metadata.Set("name", "OrderPlaced")
	placed.Metadata.Set("message_kind", "event")
	placed.Metadata.Set("correlation_id", "corr-42")
	placed.Metadata.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	long := message.NewMessage("6f1c2e3d-4b5a-4978-8c6d-5e4f3a2b1c0d", []byte{0x00, 0xff, 0xc0})
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"} {
		long.Metadata.Set(k, string(bytes.Repeat([]byte(k), 40)))
	}
	bare := message.NewMessage("u-1", nil)
	return []*message.Message{placed, long, bare}
}

// marshalled returns the values watermill-redisstream's default marshaler
// writes for msg, as Redis returns them (strings).
func marshalled(t testing.TB, msg *message.Message) (map[string]any, error) {
	t.Helper()
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal("", msg)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(values))
	for k, v := range values {
		switch v := v.(type) {
		case string:
			out[k] = v
		case []byte:
			out[k] = string(v)
		default:
			t.Fatalf("field %s: unexpected value type %T", k, v)
		}
	}
	return out, nil
}

// redisEntries publishes msgs with watermill-redisstream to a stream of
// the real Redis and reads them back through RedisSource.
func redisEntries(f *testing.F, msgs []*message.Message) []Entry {
	client, prefix := testsvc.RedisPrefix(f)
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		f.Fatal(err)
	}
	stream := prefix + "events"
	if err := pub.Publish(stream, msgs...); err != nil {
		f.Fatal(err)
	}
	batches, err := NewRedisSource(client).Read(context.Background(), []StreamRead{{Stream: stream}}, len(msgs)+1)
	if err != nil {
		f.Fatal(err)
	}
	entries := batches[0].Entries
	if len(entries) != len(msgs) {
		f.Fatalf("read %d entries, published %d", len(entries), len(msgs))
	}
	for i, e := range entries {
		ev, err := decodeEntry(stream, e)
		if err != nil || !sameEvent(ev, Event{Stream: stream, ID: e.ID, UUID: msgs[i].UUID, Metadata: msgs[i].Metadata, Payload: msgs[i].Payload}) {
			f.Fatalf("entry %d read from Redis decodes to %+v, %v; published %v", i, ev, err, msgs[i])
		}
	}
	return entries
}

// FuzzDecodeEntry fuzzes the decoding of a stream entry into an Event (the
// worker's decodeEntry): its uuid, payload and metadata fields, which of
// them are present and their Go type (shape bits).
func FuzzDecodeEntry(f *testing.F) {
	msgs := fuzzEntryMessages()
	add := func(values map[string]any) {
		uuid, _ := stringValue(values[FieldUUID])
		payload, _ := stringValue(values[FieldPayload])
		metadata, _ := stringValue(values[FieldMetadata])
		f.Add(uuid, payload, metadata, uint8(0))
	}
	for _, msg := range msgs {
		values, err := marshalled(f, msg)
		if err != nil {
			f.Fatal(err)
		}
		add(values)
		add(encodeEntry(msg.UUID, msg.Metadata, msg.Payload))
	}
	for _, e := range redisEntries(f, msgs) {
		add(e.Values)
	}
	f.Add("u-1", "", "\xc0", uint8(shapeNoPayload))
	f.Add("", "p", "\x81\xa1k\xa1v", uint8(shapeBytes))
	f.Add("u-1", "p", "\x81\xa1k", uint8(0))
	f.Add("u-1", "p", "\x81\xc4\x01k\xc0", uint8(shapeNoUUID))
	f.Add("u-1", "p", "\xdf\x00\x00\x00\x01\xa1k\xa1v\x00", uint8(shapeNoMetadata))

	f.Fuzz(func(t *testing.T, uuid, payload, metadata string, shape uint8) {
		const stream, id = "events", "1700000000000-0"
		values := map[string]any{}
		set := func(bit uint8, field, v string) {
			switch {
			case shape&bit != 0:
			case shape&shapeBytes != 0:
				values[field] = []byte(v)
			default:
				values[field] = v
			}
		}
		set(shapeNoUUID, FieldUUID, uuid)
		set(shapeNoPayload, FieldPayload, payload)
		set(shapeNoMetadata, FieldMetadata, metadata)

		ev, err := decodeEntry(stream, Entry{ID: id, Values: values})
		if err != nil {
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("error %v does not wrap ErrUndecodable", err)
			}
			if !reflect.DeepEqual(ev, Event{}) {
				t.Fatalf("a failed decode returned a half-built event %+v", ev)
			}
			return
		}
		if ev.Stream != stream || ev.ID != id || ev.UUID == "" || ev.UUID != uuid || ev.Metadata == nil {
			t.Fatalf("decoded event %+v from uuid %q", ev, uuid)
		}
		if shape&shapeNoPayload == 0 && string(ev.Payload) != payload || shape&shapeNoPayload != 0 && len(ev.Payload) != 0 {
			t.Fatalf("decoded payload %q from %q (shape %b)", ev.Payload, payload, shape)
		}

		// What Watermill's own subscriber makes of the entry (it reads
		// strings, as Redis returns them): the same message.
		if shape&shapeBytes == 0 {
			msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(values)
			if err != nil {
				t.Fatalf("decodeEntry accepts an entry watermill-redisstream rejects: %v", err)
			}
			if !sameEvent(ev, Event{Stream: stream, ID: id, UUID: msg.UUID, Metadata: msg.Metadata, Payload: msg.Payload}) {
				t.Fatalf("decodeEntry reads %+v, watermill-redisstream %v %q %v", ev, msg.UUID, msg.Payload, msg.Metadata)
			}
		}

		// Round trips: through this package's encoding (dead letters, the
		// in-memory log) and watermill-redisstream's marshaler.
		back, err := decodeEntry(stream, Entry{ID: id, Values: encodeEntry(ev.UUID, ev.Metadata, ev.Payload)})
		if err != nil || !sameEvent(back, ev) {
			t.Fatalf("round trip through encodeEntry: %+v became %+v, %v", ev, back, err)
		}
		msg := message.NewMessage(ev.UUID, ev.Payload)
		msg.Metadata = ev.Metadata
		wm, err := marshalled(t, msg)
		if err != nil {
			return // metadata with the reserved uuid key
		}
		back, err = decodeEntry(stream, Entry{ID: id, Values: wm})
		if err != nil || !sameEvent(back, ev) {
			t.Fatalf("round trip through watermill-redisstream's marshaler: %+v became %+v, %v", ev, back, err)
		}
	})
}

// sameEvent reports whether a and b are the same event (an empty payload
// or metadata equal to an absent one).
func sameEvent(a, b Event) bool {
	return a.Stream == b.Stream && a.ID == b.ID && a.UUID == b.UUID && bytes.Equal(a.Payload, b.Payload) &&
		(len(a.Metadata) == 0 && len(b.Metadata) == 0 || maps.Equal(a.Metadata, b.Metadata))
}
