package sentryobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/getsentry/sentry-go"
)

// config holds the resolved options. [New] copies it into the [Capture];
// nothing reads options per message.
type config struct {
	Hub    *sentry.Hub
	Logger *slog.Logger
	Ignore func(error) bool

	DedupWindow time.Duration
	DedupSize   int
}

// Defaults of [WithDedupWindow] and [WithDedupSize].
const (
	DefaultDedupWindow = time.Minute
	DefaultDedupSize   = 4096
)

func newConfig(opts []Option) config {
	c := config{
		Hub:         sentry.CurrentHub(),
		Ignore:      isCanceled,
		DedupWindow: DefaultDedupWindow,
		DedupSize:   DefaultDedupSize,
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

// WithDedupWindow sets how long a failure of a message in a handler
// suppresses further reports of the same message (by UUID) in the same
// handler, so that a poison message the broker redelivers again and again
// makes one Sentry event per window instead of one per delivery. The window
// runs from the report: suppressed failures do not extend it. A window of
// zero or less turns deduplication off. If not set, [DefaultDedupWindow] (a
// minute) is used.
//
// Suppressed failures still return their error or re-raise their panic to
// the router unchanged; only the Sentry event is skipped. Messages without
// a UUID are always reported.
func WithDedupWindow(d time.Duration) Option {
	return optionFunc(func(c *config) { c.DedupWindow = d })
}

// WithDedupSize sets how many recently reported messages are remembered for
// [WithDedupWindow]. The memory is allocated once and never grows: when it
// is full, each new message forgets the oldest one, which is then reported
// again on its next failure. A size of zero or less is ignored. If not set,
// [DefaultDedupSize] is used.
func WithDedupSize(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.DedupSize = n
		}
	})
}
