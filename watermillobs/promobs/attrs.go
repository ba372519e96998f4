package promobs

import (
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// The typed attributes of hook operations that the metrics hooks read.

// stringAttr returns the string attribute key of op, or "".
func stringAttr(op hooks.Operation, key string) string {
	v, ok := op.Attr(key)
	if !ok || v.Kind() != slog.KindString {
		return ""
	}
	return v.String()
}

// intAttr returns the integer attribute key of op (int64 or uint64).
func intAttr(op hooks.Operation, key string) (int64, bool) {
	v, ok := op.Attr(key)
	if !ok {
		return 0, false
	}
	switch v.Kind() {
	case slog.KindInt64:
		return v.Int64(), true
	case slog.KindUint64:
		if u := v.Uint64(); u <= 1<<63-1 {
			return int64(u), true
		}
	}
	return 0, false
}
