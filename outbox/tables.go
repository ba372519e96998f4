package outbox

import (
	"errors"
	"fmt"
	"strings"
)

// maxIdentifier is PostgreSQL's identifier limit in bytes (NAMEDATALEN-1).
// Longer names are cut silently by the server, so two topics sharing a long
// prefix would end up in one table; they are refused here instead.
const maxIdentifier = 63

// Prefixes of the table names watermill-sql's PostgreSQL adapters derive
// from a topic, and of the table this package adds.
const (
	messagesPrefix   = "watermill_"
	offsetsPrefix    = "watermill_offsets_"
	deadLetterPrefix = "watermill_dead_"
)

// MaxTopicLength is the longest outbox topic, in bytes: the longest derived
// table name, "watermill_offsets_" + topic, must fit in PostgreSQL's
// 63-byte identifiers.
const MaxTopicLength = maxIdentifier - len(offsetsPrefix)

// ErrInvalidTopic is wrapped by the errors of [ValidateTopic] and
// [ValidateSchema], and so of [New] for a bad Config.Topic or Config.Schema.
var ErrInvalidTopic = errors.New("invalid outbox table name")

// ValidateTopic reports whether topic can name an outbox: its tables are
// watermill_{topic}, watermill_offsets_{topic} and watermill_dead_{topic}.
// watermill-sql accepts only ASCII letters, digits and - $ : . _ in topics
// (it splices them into SQL), and PostgreSQL cuts identifiers at 63 bytes,
// so topic must be 1 to [MaxTopicLength] bytes of those characters.
func ValidateTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty topic", ErrInvalidTopic)
	}
	if len(topic) > MaxTopicLength {
		return fmt.Errorf("%w: topic %q is %d bytes, longer than %d: table %s%s would be cut at PostgreSQL's 63-byte identifier limit",
			ErrInvalidTopic, topic, len(topic), MaxTopicLength, offsetsPrefix, topic)
	}
	for i := 0; i < len(topic); i++ {
		if !topicByte(topic[i]) {
			return fmt.Errorf("%w: topic %q has %q at byte %d; allowed are ASCII letters, digits and - $ : . _",
				ErrInvalidTopic, topic, topic[i], i)
		}
	}
	return nil
}

func topicByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-$:._", c) >= 0
}

// ValidateSchema reports whether schema can qualify the outbox tables: empty
// (the tables are found through the connection's search_path), or 1 to 63
// bytes of ASCII letters, digits, _ and $, not starting with a digit or $.
// The name is quoted in SQL, so it is case-sensitive.
func ValidateSchema(schema string) error {
	if schema == "" {
		return nil
	}
	if len(schema) > maxIdentifier {
		return fmt.Errorf("%w: schema %q is longer than %d bytes", ErrInvalidTopic, schema, maxIdentifier)
	}
	for i := 0; i < len(schema); i++ {
		c := schema[i]
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(i > 0 && (c == '$' || (c >= '0' && c <= '9')))
		if !ok {
			return fmt.Errorf("%w: schema %q has %q at byte %d; allowed are ASCII letters, digits, _ and $ (not first)",
				ErrInvalidTopic, schema, c, i)
		}
	}
	return nil
}

// tables holds the quoted, possibly schema-qualified names of one outbox's
// tables. The parts were validated, so quoting needs no escaping.
type tables struct {
	messages, offsets, deadLetter string
}

func newTables(schema, topic string) tables {
	q := func(name string) string {
		if schema == "" {
			return `"` + name + `"`
		}
		return `"` + schema + `"."` + name + `"`
	}
	return tables{
		messages:   q(messagesPrefix + topic),
		offsets:    q(offsetsPrefix + topic),
		deadLetter: q(deadLetterPrefix + topic),
	}
}
