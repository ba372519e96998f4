package main

import (
	"context"
	"log/slog"
	"slices"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// registerOperationLog registers, for -trace-all, a hook that logs every
// hook operation ("hook operation", its name and the keys of its
// attributes, groups as dotted keys), so that the operations the span hook
// leaves to a send or process span (publisher.publish.*,
// consumer.consume.*) are visible too. Keys only: values may be payload.
func registerOperationLog(reg *hooks.Registry, logger *slog.Logger) error {
	_, err := reg.Register(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		logger.LogAttrs(ctx, slog.LevelInfo, "hook operation",
			slog.String("operation", op.Name), slog.Any("attr_keys", attrKeys(nil, "", op.Attrs)))
		return next(ctx)
	}), hooks.WithOperations("*"), hooks.WithName("orderflow.oplog"))
	return err
}

// attrKeys appends the keys of attrs, groups flattened with dots, sorted.
func attrKeys(keys []string, prefix string, attrs []slog.Attr) []string {
	for _, a := range attrs {
		key := a.Key
		if prefix != "" && key != "" {
			key = prefix + "." + key
		} else if key == "" {
			key = prefix
		}
		if v := a.Value.Resolve(); v.Kind() == slog.KindGroup {
			keys = attrKeys(keys, key, v.Group())
			continue
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}
