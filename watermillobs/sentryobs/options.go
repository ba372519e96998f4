package sentryobs

import (
	"context"
	"errors"
	"log/slog"

	"github.com/getsentry/sentry-go"
)

// config holds the resolved options. [New] copies it into the [Capture];
// nothing reads options per message.
type config struct {
	Hub    *sentry.Hub
	Logger *slog.Logger
	Ignore func(error) bool
}

func newConfig(opts []Option) config {
	c := config{
		Hub:    sentry.CurrentHub(),
		Ignore: isCanceled,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// isCanceled is the default filter: a canceled context means the router or
// the caller is shutting down, which is not an error worth an alert.
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled)
}

// An Option configures a [Capture].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithHub sets the hub that is cloned for every message. A nil hub is
// ignored. If not set, sentry.CurrentHub is used, the hub that sentry.Init
// configures; it is resolved when the [Capture] is built, while its client
// is read per message, so New may run before sentry.Init.
func WithHub(hub *sentry.Hub) Option {
	return optionFunc(func(c *config) {
		if hub != nil {
			c.Hub = hub
		}
	})
}

// WithLogger sets the logger that reports failures of Sentry itself, such
// as a panicking transport or BeforeSend callback. A nil logger is ignored.
// If not set, slog.Default is used.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.Logger = l
		}
	})
}

// WithIgnoreErrors sets the filter for handler errors: errors for which
// ignore returns true are returned to the router as usual but not sent to
// Sentry. It replaces the default filter, so include context.Canceled
// yourself if you still want it ignored. A nil filter is ignored. If not
// set, errors matching context.Canceled (shutdown noise) are ignored.
// Panics are always captured.
func WithIgnoreErrors(ignore func(err error) bool) Option {
	return optionFunc(func(c *config) {
		if ignore != nil {
			c.Ignore = ignore
		}
	})
}
