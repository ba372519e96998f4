// Package payloadtrace records sanitized message payloads on the active
// span, for debugging what a handler received without leaking what it must
// not show: JSON payloads are walked once, sensitive keys are redacted by
// default ([DefaultSensitiveFields]), fields can be included, redacted or
// hashed (a keyed HMAC when a key is given) at every depth, and the result
// is cut to a size limit. It is off unless a [Tracing] is installed, either
// with its Middleware on a router or through watermillobs.Instrument with
// watermillobs.InstrumentConfig.PayloadTracing.
package payloadtrace
