package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"testing"
	"unicode/utf8"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// fuzzRow is an outbox row as the forwarder's subscriber scans it:
// offset, transaction ID, uuid, payload, metadata. A nil payload or
// metadata is an SQL NULL.
type fuzzRow struct {
	offset                  int64
	txID                    uint64
	uuid, payload, metadata []byte
}

// Scan implements wmsql.Scanner for the columns tolerantSchema scans.
func (r fuzzRow) Scan(dest ...any) error {
	if len(dest) != 5 {
		return fmt.Errorf("scanning %d columns, the row has 5", len(dest))
	}
	*dest[0].(*int64) = r.offset
	*dest[1].(*wmsql.XID8) = wmsql.XID8(r.txID)
	*dest[2].(*[]byte) = r.uuid
	*dest[3].(*[]byte) = r.payload
	*dest[4].(*[]byte) = r.metadata
	return nil
}

// insertCapture is an executor that records the rows watermill-sql's
// publisher inserts instead of sending them to a database.
type insertCapture struct{ rows []fuzzRow }

func (c *insertCapture) ExecContext(_ context.Context, _ string, args ...any) (wmsql.Result, error) {
	if len(args)%3 != 0 {
		return nil, fmt.Errorf("%d insert arguments, want uuid, payload, metadata per row", len(args))
	}
	for i := 0; i < len(args); i += 3 {
		uuid, ok1 := args[i].(string)
		payload, ok2 := args[i+1].([]byte)
		metadata, ok3 := args[i+2].([]byte)
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("insert arguments %T, %T, %T", args[i], args[i+1], args[i+2])
		}
		c.rows = append(c.rows, fuzzRow{offset: int64(len(c.rows) + 1), txID: 1, uuid: []byte(uuid), payload: payload, metadata: metadata})
	}
	return nil, nil
}

func (c *insertCapture) QueryContext(context.Context, string, ...any) (wmsql.Rows, error) {
	return nil, errors.New("insertCapture runs no queries")
}

// decodeRow decodes an outbox row as the forwarder does: the row into the
// envelope message (tolerantSchema), the envelope checked (checkEnvelope,
// the middleware's test before dead-lettering), then unwrapped into the
// destination topic and the saved message. The unwrapping is that of
// Watermill's forwarder (components/forwarder/envelope.go:
// unwrapMessageFromEnvelope, unexported), which decodes the same JSON into
// a struct of the same shape as envelope.
func decodeRow(t testing.TB, o *Outbox, row wmsql.Scanner) (topic string, msg *message.Message, err error) {
	t.Helper()
	r, err := tolerantSchema{o.schema}.UnmarshalMessage(wmsql.UnmarshalMessageParams{Row: row})
	if err != nil {
		t.Fatalf("a scanned row does not decode into a message: %v", err)
	}
	if r.Msg == nil {
		t.Fatal("a decoded row has no message")
	}
	if err := checkEnvelope(r.Msg); err != nil {
		if !errors.Is(err, ErrUndecodable) {
			t.Fatalf("checkEnvelope error %v does not wrap ErrUndecodable", err)
		}
		return "", nil, err
	}
	var env envelope
	if err := json.Unmarshal(r.Msg.Payload, &env); err != nil {
		t.Fatalf("an envelope checkEnvelope accepts does not unwrap: %v", err)
	}
	if env.DestinationTopic == "" {
		t.Fatal("an envelope checkEnvelope accepts has no destination topic")
	}
	msg = message.NewMessage(env.UUID, env.Payload)
	msg.Metadata = env.Metadata
	return env.DestinationTopic, msg, nil
}

func fuzzOutbox(t testing.TB) *Outbox {
	t.Helper()
	o, err := New(Config{Propagator: propagation.TraceContext{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// fuzzMessages are messages as an application saves them.
func fuzzMessages() (topics []string, msgs []*message.Message) {
	placed := message.NewMessage("0b5d2a4e-1f3c-4e8a-9d7b-2c6f8e1a3b5d", []byte(`{"order_id":"o-1","amount":4200}`))
	placed.Metadata.Set(contract.NameKey, "OrderPlaced")
	placed.Metadata.Set(contract.MessageKindKey, contract.KindEvent)
	placed.Metadata.Set(contract.CorrelationIDKey, "corr-42")
	placed.Metadata.Set(contract.TraceparentKey, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	binary := message.NewMessage("6f1c2e3d-4b5a-4978-8c6d-5e4f3a2b1c0d", []byte{0x00, 0xff, '"', '\\', '\n'})
	bare := message.NewMessage("", nil)
	return []string{"shop.events", "shop.commands.ChargeCard", "t"}, []*message.Message{placed, binary, bare}
}

// encodeRows saves msg for topic through the outbox's save path into c.
func encodeRows(o *Outbox, c *insertCapture, topic string, msg *message.Message) error {
	return o.txPublisher(c).Publish(topic, msg)
}

// postgresRows saves msgs in a real outbox table and returns the rows as
// the forwarder's subscriber reads them, each checked to decode into the
// saved message.
func postgresRows(f *testing.F, o *Outbox, topics []string, msgs []*message.Message) []fuzzRow {
	db, _ := testsvc.Postgres(f)
	ctx := context.Background()
	if err := o.CreateSchema(ctx, wmsql.BeginnerFromStdSQL(db)); err != nil {
		f.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		f.Fatal(err)
	}
	for i, msg := range msgs {
		if err := o.TxPublisher(tx).Publish(topics[i], msg); err != nil {
			f.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		f.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT "offset", transaction_id, uuid, payload, metadata FROM `+o.tables.messages+` ORDER BY "offset"`)
	if err != nil {
		f.Fatal(err)
	}
	defer rows.Close()
	var out []fuzzRow
	for i := 0; rows.Next(); i++ {
		var row fuzzRow
		var xid wmsql.XID8
		if err := rows.Scan(&row.offset, &xid, &row.uuid, &row.payload, &row.metadata); err != nil {
			f.Fatal(err)
		}
		row.txID = uint64(xid)
		topic, msg, err := decodeRow(f, o, row)
		if err != nil || i >= len(msgs) || topic != topics[i] || !sameMessage(msg, msgs[i]) {
			f.Fatalf("row %d read from PostgreSQL decodes to %q %v, %v; saved %q %v", i, topic, msg, err, topics[i], msgs[i])
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		f.Fatal(err)
	}
	if len(out) != len(msgs) {
		f.Fatalf("read %d rows, saved %d", len(out), len(msgs))
	}
	return out
}

// FuzzDecodeEnvelope fuzzes the decoding of an outbox row into the
// message the forwarder publishes (uuid, payload and metadata columns;
// nulls bit 0: metadata NULL, bit 1: payload NULL), and the round trip of
// a message saved for topic: uuid, payload and the metadata JSON object in
// metadata, when it is one.
func FuzzDecodeEnvelope(f *testing.F) {
	o := fuzzOutbox(f)
	topics, msgs := fuzzMessages()
	var rows []fuzzRow
	c := &insertCapture{}
	for i, msg := range msgs {
		if err := encodeRows(o, c, topics[i], msg.Copy()); err != nil {
			f.Fatal(err)
		}
	}
	rows = append(rows, c.rows...)
	rows = append(rows, postgresRows(f, o, topics, msgs)...)
	for _, r := range rows {
		f.Add(r.uuid, r.payload, r.metadata, uint8(0), "shop.events")
	}
	// Rows that are not envelopes: metadata that is not an object of
	// strings, payloads that are not an envelope or lack its topic.
	f.Add([]byte("u-1"), []byte(`{"destination_topic":"t","uuid":"x","payload":"AA==","metadata":{"k":"v"}}`), []byte(`{"k":1}`), uint8(0), "t")
	f.Add([]byte("u-2"), []byte(`{"uuid":"x"}`), []byte(`null`), uint8(0), "t")
	f.Add([]byte("u-3"), []byte(`{"destination_topic":"t","payload":"not base64"}`), []byte(nil), uint8(1), "t")
	f.Add([]byte("u-4"), []byte(nil), []byte(`{}`), uint8(2), "")
	f.Add([]byte("u-5"), []byte(`{"destination_topic":"t","metadata":null}`), []byte(`{"published_at":"x"}`), uint8(0), "t")

	f.Fuzz(func(t *testing.T, uuid, payload, metadata []byte, nulls uint8, topic string) {
		row := fuzzRow{offset: 1, txID: 1, uuid: uuid, payload: payload, metadata: metadata}
		if nulls&1 != 0 {
			row.metadata = nil
		}
		if nulls&2 != 0 {
			row.payload = nil
		}
		// The row as stored: what the forwarder makes of it.
		if dest, msg, err := decodeRow(t, o, row); err == nil {
			if dest == "" || msg == nil {
				t.Fatalf("decoded a half-built envelope: topic %q, message %v", dest, msg)
			}
		}

		// A message made of the input, saved and read back.
		md := message.Metadata{}
		if err := json.Unmarshal(metadata, &md); err != nil || md == nil {
			md = message.Metadata{}
		}
		in := message.NewMessage(string(uuid), payload)
		in.Metadata = md
		c := &insertCapture{}
		if err := encodeRows(o, c, topic, in); err != nil {
			if topic == "" && errors.Is(err, ErrNoTopic) {
				return
			}
			t.Fatalf("saving %v for topic %q: %v", in, topic, err)
		}
		if len(c.rows) != 1 {
			t.Fatalf("saving one message inserted %d rows", len(c.rows))
		}
		dest, out, err := decodeRow(t, o, c.rows[0])
		if err != nil {
			t.Fatalf("a saved message does not decode: %v\nrow %q %q %q", err, c.rows[0].uuid, c.rows[0].payload, c.rows[0].metadata)
		}
		if !jsonSafe(topic, in) {
			return // JSON carries strings as UTF-8: invalid bytes become U+FFFD
		}
		if dest != topic || !sameMessage(out, in) {
			t.Fatalf("round trip changed the message:\n%q %q %q %v\nbecame\n%q %q %q %v",
				topic, in.UUID, in.Payload, in.Metadata, dest, out.UUID, out.Payload, out.Metadata)
		}
	})
}

// sameMessage reports whether a and b carry the same UUID, payload and
// metadata (an empty metadata or payload equal to an absent one).
func sameMessage(a, b *message.Message) bool {
	return a.UUID == b.UUID && bytes.Equal(a.Payload, b.Payload) &&
		(len(a.Metadata) == 0 && len(b.Metadata) == 0 || maps.Equal(a.Metadata, b.Metadata))
}

// jsonSafe reports whether the strings of topic and msg are valid UTF-8,
// which JSON carries unchanged.
func jsonSafe(topic string, msg *message.Message) bool {
	if !utf8.ValidString(topic) || !utf8.ValidString(msg.UUID) {
		return false
	}
	for k, v := range msg.Metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

var _ wmsql.ContextExecutor = (*insertCapture)(nil)
