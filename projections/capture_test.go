package projections_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewJSONHandler(buf, nil)), buf
}

// recorded is an operation seen by a recorder.
type recorded struct {
	name  string
	attrs map[string]slog.Value
	err   error
}

// recorder records the operations of a private registry.
type recorder struct {
	mu  sync.Mutex
	ops []recorded
}

func newRecorder(t testing.TB, patterns ...string) (*hooks.Registry, *recorder) {
	t.Helper()
	reg := hooks.NewRegistry()
	r := &recorder{}
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		err := next(ctx)
		attrs := make(map[string]slog.Value, len(op.Attrs))
		for _, a := range op.Attrs {
			attrs[a.Key] = a.Value
		}
		r.mu.Lock()
		r.ops = append(r.ops, recorded{name: op.Name, attrs: attrs, err: err})
		r.mu.Unlock()
		return err
	}), hooks.WithOperations(patterns...))
	return reg, r
}

func (r *recorder) named(prefix string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, op := range r.ops {
		if strings.HasPrefix(op.name, prefix) {
			out = append(out, op)
		}
	}
	return out
}
