package payloadtrace

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"log/slog"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// DefaultSensitiveFields are the keys whose values [Tracing] redacts
// unless DisableDefaultRedaction is set. They cover credentials, payment
// data and personal contact data. Keys match as described in
// [Tracing], so "card_number" also covers "cardNumber". The slice is
// read when a middleware is built; add keys with RedactFields rather than by
// changing it.
var DefaultSensitiveFields = []string{
	"password", "passwd", "new_password", "old_password", "password_confirmation",
	"secret", "client_secret", "private_key",
	"token", "access_token", "refresh_token", "id_token", "api_key", "authorization",
	"cookie", "set_cookie", "session_token", "credentials",
	"email", "phone", "phone_number",
	"card_number", "cvv", "cvc", "pin", "iban", "ssn",
}

// Payload tracing span names, attributes and markers.
const (
	payloadEventName        = "cqrs.command_payload"
	payloadAttrKey          = "payload"
	payloadPresentKey       = "cqrs.payload_present"
	payloadTruncatedKey     = "cqrs.payload_truncated"
	payloadSizeKey          = "cqrs.payload_size"
	defaultMaxPayloadChars  = 4096
	maxPayloadDepth         = 32
	payloadRedactedMarker   = "[REDACTED]"
	payloadDepthMarker      = "[MAX DEPTH]"
	payloadNonJSONMarker    = "[non-JSON payload omitted]"
	payloadHashPrefix       = "sha256:"
	payloadHMACPrefix       = "hmac-sha256:"
	payloadTruncationMarker = bound.Truncated
)

// Tracing is a router middleware that records a sanitized copy of
// each message's JSON payload on the message's current span, so that a trace
// shows what a handler was asked to do without exposing secrets or personal
// data. watermillobs.Instrument installs it when
// InstrumentConfig.PayloadTracing is set; by hand, add its Middleware to the
// router after a middleware that starts a span (such as watermillobs.Tracing):
// it never starts a span of its own, and it does nothing when the message's
// context has no recording span.
//
// On the span it sets the attributes cqrs.payload_present (the payload is not
// empty), cqrs.payload_size (its size in bytes) and cqrs.payload_truncated,
// and it adds the event cqrs.command_payload whose "payload" attribute holds
// the sanitized JSON. A payload that is not valid JSON (or is nested deeper
// than encoding/json accepts) is never copied, since it may hold secrets in a
// form that cannot be redacted: the event then says
// "[non-JSON payload omitted]".
//
// Sanitizing walks objects and arrays at every level. Keys match
// case-insensitively and ignoring '_' and '-', so "api_key" also matches
// "apiKey" and "API-KEY". For each object member, in order of precedence:
//
//   - a key of RedactFields or [DefaultSensitiveFields] gets the value
//     "[REDACTED]";
//   - a key of HashFields gets a digest of the value, so that traces can be
//     matched on it without showing it (see HMACKey);
//   - otherwise the value is kept and sanitized in turn.
//
// When IncludeFields is set, only the values under listed keys are shown:
// a listed key keeps its whole value, sanitized by the rules above, and an
// unlisted key is dropped, except that objects and arrays under unlisted keys
// are searched so that listed keys nested in them survive, with the path
// leading to them. Containers in which nothing survives are left out, so
// array indices may shift. Redaction and hashing apply to listed keys too.
//
// Numbers keep their text (1.50 stays 1.50) and members keep their order.
// Objects and arrays nested deeper than 32 levels are replaced by
// "[MAX DEPTH]" (or dropped outside listed keys). The work per message is
// linear in the payload size and stops once MaxPayloadChars bytes of output
// are written.
//
// The middleware never fails a message because of its own work: an
// unexpected failure is logged to Logger and the handler runs as if the
// middleware were not there. The handler's results and panics pass through
// unchanged.
type Tracing struct {
	// IncludeFields is an allowlist of keys, matched at any nesting level.
	// It is the safest configuration in production. If not set, every
	// member that is not redacted or hashed is shown.
	IncludeFields []string
	// RedactFields are keys whose values are replaced by "[REDACTED]", in
	// addition to [DefaultSensitiveFields]. If not set, only the defaults
	// are redacted.
	RedactFields []string
	// HashFields are keys whose values are replaced by a digest: of the
	// string itself for a string, of its compact JSON text for other values
	// (so "c-42" and 42 give the same digest, and a user can compute the
	// digest of an ID to search traces). If not set, nothing is hashed.
	HashFields []string
	// MaxPayloadChars caps the size in bytes of the sanitized JSON written
	// to the span event (and so its length in characters too). A longer
	// output is cut at a character boundary and ends with "…", and
	// cqrs.payload_truncated is true. If zero or negative, 4096 is used.
	MaxPayloadChars int
	// HMACKey, when set, makes digests "hmac-sha256:<hex>", an HMAC-SHA256
	// under this key, which an attacker who reads traces cannot reverse by
	// hashing candidate values (emails, phone numbers, small IDs). If not
	// set, digests are "sha256:<hex>", a plain SHA-256.
	HMACKey []byte
	// DisableDefaultRedaction stops redacting [DefaultSensitiveFields],
	// leaving only RedactFields. Use it only where the payloads hold no
	// real personal data, such as in development. If not set, the defaults
	// are redacted.
	DisableDefaultRedaction bool
	// Logger receives the middleware's own failures. If not set,
	// slog.Default is used.
	Logger *slog.Logger
}

// Middleware returns h wrapped with payload tracing. The configuration is
// read once here; changing p afterwards has no effect.
func (p Tracing) Middleware(h message.HandlerFunc) message.HandlerFunc {
	s := p.compile()
	return func(msg *message.Message) ([]*message.Message, error) {
		if msg != nil {
			// Cheap gate first: no span, or one that is not sampled,
			// costs nothing.
			if span := trace.SpanFromContext(msg.Context()); span.IsRecording() {
				s.record(msg.Context(), span, msg.Payload)
			}
		}
		return h(msg)
	}
}

// Field actions; a key can have several, checked in this order.
const (
	fieldRedact uint8 = 1 << iota
	fieldHash
	fieldInclude
)

// payloadSanitizer is the resolved form of a Tracing.
type payloadSanitizer struct {
	fields    map[string]uint8 // normalized key -> field actions
	allowlist bool
	max       int
	hmacKey   []byte
	logger    *slog.Logger
}

func (p Tracing) compile() *payloadSanitizer {
	s := &payloadSanitizer{
		fields:    make(map[string]uint8),
		allowlist: len(p.IncludeFields) > 0,
		max:       p.MaxPayloadChars,
		logger:    p.Logger,
	}
	if s.max <= 0 {
		s.max = defaultMaxPayloadChars
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if len(p.HMACKey) > 0 {
		s.hmacKey = bytes.Clone(p.HMACKey)
	}
	add := func(keys []string, action uint8) {
		for _, k := range keys {
			if k = normalizeFieldKey(k); k != "" {
				s.fields[k] |= action
			}
		}
	}
	if !p.DisableDefaultRedaction {
		add(DefaultSensitiveFields, fieldRedact)
	}
	add(p.RedactFields, fieldRedact)
	add(p.HashFields, fieldHash)
	add(p.IncludeFields, fieldInclude)
	return s
}

// normalizeFieldKey lowercases k and removes '_' and '-', so that the
// snake_case, camelCase and kebab-case spellings of a key match. Keys that
// are already normal are returned without allocating.
func normalizeFieldKey(k string) string {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c >= utf8.RuneSelf || c == '_' || c == '-' || ('A' <= c && c <= 'Z') {
			return normalizeFieldKeySlow(k)
		}
	}
	return k
}

func normalizeFieldKeySlow(k string) string {
	b := make([]byte, 0, len(k))
	for _, r := range k {
		if r == '_' || r == '-' {
			continue
		}
		b = utf8.AppendRune(b, unicode.ToLower(r))
	}
	return string(b)
}

// record sets the payload attributes and event on span. It recovers from
// its own panics: payload tracing must never take a message down.
func (s *payloadSanitizer) record(ctx context.Context, span trace.Span, payload []byte) {
	defer func() {
		if r := recover(); r != nil {
			panics.Report(ctx, s.logger, "payloadtrace: payload tracing failed", r)
		}
	}()
	if len(payload) == 0 {
		span.SetAttributes(
			attribute.Bool(payloadPresentKey, false),
			attribute.Bool(payloadTruncatedKey, false),
			attribute.Int(payloadSizeKey, 0),
		)
		return
	}
	out, truncated := s.sanitize(payload)
	span.SetAttributes(
		attribute.Bool(payloadPresentKey, true),
		attribute.Bool(payloadTruncatedKey, truncated),
		attribute.Int(payloadSizeKey, len(payload)),
	)
	span.AddEvent(payloadEventName, trace.WithAttributes(attribute.String(payloadAttrKey, out)))
}

// sanitize returns the sanitized JSON of payload, at most s.max bytes of
// valid UTF-8, and whether it was cut.
func (s *payloadSanitizer) sanitize(payload []byte) (string, bool) {
	// Validate first, so that an invalid payload never has a prefix copied
	// out before the error shows up, and so that the walk can trust the
	// syntax. json.Valid does not allocate.
	if !json.Valid(payload) {
		return s.literal(payloadNonJSONMarker)
	}
	w := payloadWalker{
		s: s,
		// A view of the payload, not a copy, so that memory stays bounded
		// by the output whatever the payload's size. Nothing changes the
		// payload while the walk runs (the handler has not started), and
		// no string of the view outlives the walk: what leaves it is copied
		// into the output.
		in:  jsonScanner{src: unsafe.String(unsafe.SliceData(payload), len(payload))},
		out: boundedBuffer{b: make([]byte, 0, min(s.max, 2*len(payload)+16)), limit: s.max},
	}
	full := w.value("", false, !s.allowlist, 0)
	switch {
	case full:
		return w.out.truncated(), true
	case len(w.out.b) == 0:
		// A scalar payload under an allowlist: nothing is listed.
		return s.literal("null")
	}
	return string(w.out.b), false
}

// literal returns a fixed output, cut to the cap if the cap is tiny.
func (s *payloadSanitizer) literal(v string) (string, bool) {
	b := bound.String(v, s.max)
	return b, b != v
}

// payloadWalker walks a JSON payload token by token and writes the
// sanitized copy, so that memory stays bounded by the output cap and the
// nesting depth, whatever the payload size.
type payloadWalker struct {
	s   *payloadSanitizer
	in  jsonScanner
	out boundedBuffer
	// frames are the containers being walked, outermost first. Under an
	// allowlist a container is written only once something inside it is
	// (frames[opened:] are pending), so that paths to nothing are left out.
	frames []payloadFrame
	opened int
}

type payloadFrame struct {
	key    string
	hasKey bool
	open   byte
	n      int // members written
}

// value walks the next JSON value, named key in its parent object (if
// hasKey). shown reports whether the value is inside a listed subtree (or no
// allowlist is set). It reports whether the output reached its cap, which
// ends the walk.
func (w *payloadWalker) value(key string, hasKey, shown bool, depth int) (full bool) {
	switch c := w.in.peek(); c {
	case '{', '[':
		if depth >= maxPayloadDepth {
			w.in.skipValue()
			if shown {
				w.scalar(key, hasKey, payloadDepthMarker, true)
			}
			break
		}
		w.in.pos++
		w.frames = append(w.frames, payloadFrame{key: key, hasKey: hasKey, open: c})
		if shown || depth == 0 {
			w.materialize()
		}
		for w.in.more() {
			if c == '{' {
				k := w.in.str()
				w.in.colon()
				full = w.member(k, shown, depth+1)
			} else {
				full = w.value("", false, shown, depth+1)
			}
			if full {
				return true
			}
		}
		w.in.pos++ // the closing delimiter
		w.pop()
	case '"':
		if v := w.in.str(); shown {
			w.scalar(key, hasKey, v, true)
		}
	default: // a number (its text kept), true, false or null
		if v := w.in.literal(); shown {
			w.scalar(key, hasKey, v, false)
		}
	}
	return w.out.full
}

// member walks the value of the object member k.
func (w *payloadWalker) member(k string, shown bool, depth int) (full bool) {
	action := w.s.fields[normalizeFieldKey(k)]
	shown = shown || action&fieldInclude != 0
	switch {
	case action&fieldRedact != 0:
		w.in.skipValue()
		if shown {
			w.scalar(k, true, payloadRedactedMarker, true)
		}
	case action&fieldHash != 0:
		// A string's value is hashed, else the value's compact JSON text.
		var text string
		if w.in.peek() == '"' {
			text = w.in.str()
		} else {
			text = compactJSON(w.in.skipValue())
		}
		if shown {
			w.scalar(k, true, w.s.digest(text), true)
		}
	default:
		return w.value(k, true, shown, depth)
	}
	return w.out.full
}

// digest returns the digest of text: a string's value, or the compact JSON
// text of another value.
func (s *payloadSanitizer) digest(text string) string {
	var h hash.Hash
	prefix := payloadHashPrefix
	if s.hmacKey != nil {
		h, prefix = hmac.New(sha256.New, s.hmacKey), payloadHMACPrefix
	} else {
		h = sha256.New()
	}
	h.Write([]byte(text))
	return prefix + hex.EncodeToString(h.Sum(nil))
}

// compactJSON returns the compact text of a valid JSON value.
func compactJSON(raw string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(raw)) != nil {
		return raw
	}
	return b.String()
}

// materialize writes the pending containers, now that something inside
// them is shown.
func (w *payloadWalker) materialize() {
	for ; w.opened < len(w.frames); w.opened++ {
		f := &w.frames[w.opened]
		w.prefix(w.opened, f.key, f.hasKey)
		w.out.writeByte(f.open)
	}
}

// prefix writes the separator and key of a new member of frames[i-1].
func (w *payloadWalker) prefix(i int, key string, hasKey bool) {
	if i == 0 {
		return
	}
	parent := &w.frames[i-1]
	if parent.n > 0 {
		w.out.writeByte(',')
	}
	parent.n++
	if hasKey {
		w.out.writeQuoted(key)
		w.out.writeByte(':')
	}
}

// scalar writes a member or element with a string (quoted) or literal value.
func (w *payloadWalker) scalar(key string, hasKey bool, v string, quoted bool) {
	w.materialize()
	w.prefix(len(w.frames), key, hasKey)
	if quoted {
		w.out.writeQuoted(v)
	} else {
		w.out.writeString(v)
	}
}

// pop closes the innermost container, or forgets it if nothing in it was
// shown.
func (w *payloadWalker) pop() {
	last := len(w.frames) - 1
	if w.opened > last {
		if w.frames[last].open == '{' {
			w.out.writeByte('}')
		} else {
			w.out.writeByte(']')
		}
		w.opened = last
	}
	w.frames = w.frames[:last]
}

// boundedBuffer collects output up to limit bytes and then records that it
// is full instead of growing.
type boundedBuffer struct {
	b     []byte
	limit int
	full  bool
}

func (o *boundedBuffer) writeByte(c byte) {
	if o.full {
		return
	}
	if len(o.b) >= o.limit {
		o.full = true
		return
	}
	o.b = append(o.b, c)
}

func (o *boundedBuffer) writeString(s string) {
	if o.full {
		return
	}
	if room := o.limit - len(o.b); len(s) > room {
		o.b = append(o.b, s[:room]...)
		o.full = true
		return
	}
	o.b = append(o.b, s...)
}

// writeQuoted writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, so
// the output is always valid UTF-8.
func (o *boundedBuffer) writeQuoted(s string) {
	if o.full {
		return
	}
	// Every input byte takes at least one output byte: quote no more than
	// can fit, cut at a character boundary.
	cut := false
	if room := o.limit - len(o.b) - 1; len(s) > room {
		room = max(room, 0)
		for room > 0 && !utf8.RuneStart(s[room]) {
			room--
		}
		s, cut = s[:room], true
	}
	const hexDigits = "0123456789abcdef"
	b := append(o.b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		b = utf8.AppendRune(b, r) // RuneError for invalid bytes
		i += size
	}
	b = append(b, '"')
	if cut || len(b) > o.limit {
		b = b[:min(len(b), o.limit)]
		o.full = true
	}
	o.b = b
}

// truncated returns the collected output cut at a character boundary so
// that, with the truncation marker, it fits in the limit.
func (o *boundedBuffer) truncated() string {
	marker := payloadTruncationMarker
	cut := o.limit - len(marker)
	if cut < 0 {
		cut, marker = o.limit, ""
	}
	cut = min(cut, len(o.b))
	// The output is valid UTF-8 but the cut may split a character: drop
	// its leading bytes. (An encoded U+FFFD decodes with size 3.)
	for cut > 0 {
		if r, size := utf8.DecodeLastRune(o.b[:cut]); r != utf8.RuneError || size != 1 {
			break
		}
		cut--
	}
	return string(o.b[:cut]) + marker
}
