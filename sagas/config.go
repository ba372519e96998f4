package sagas

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// Config configures a [Manager]. Zero fields get the defaults named below.
type Config struct {
	// Store keeps the instances. It is required.
	Store Store

	// Publisher sends the commands the steps produce (a
	// watermillobs.Publisher over the broker's publisher gives them send
	// spans). It is required.
	Publisher message.Publisher

	// Marshaler marshals commands and names event types; use the one the
	// cqrs processors use. It is required.
	Marshaler cqrs.CommandEventMarshaler

	// GenerateCommandTopic returns the topic of a command type (the name
	// Marshaler gives), as the command bus's GeneratePublishTopic does.
	// It is required.
	GenerateCommandTopic func(commandName string) string

	// Process identifies this process in step records. If not set,
	// "hostname:pid" is used.
	Process string

	// Logger receives the manager's logs. If not set, slog.Default is
	// used.
	Logger *slog.Logger

	// Registry runs the hook operations. If not set, the registry of the
	// handler's context (hooks.FromContext) is used.
	Registry *hooks.Registry

	// Propagator writes the step's trace context into commands and
	// timeouts. If not set, the contract's default is used (the global
	// propagator, else W3C TraceContext and Baggage).
	Propagator propagation.TextMapPropagator

	// LockTTL is how long an instance lock lives: the longest a crashed
	// holder blocks its instance. If not set, 10s is used.
	LockTTL time.Duration

	// LockWait bounds how long a step waits for an instance lock held by
	// another process before the event is nacked. If not set, 2s is used.
	LockWait time.Duration

	// MaxConflictRetries bounds how often a step is retried after a
	// version conflict before the event is nacked. If not set, 3 is used.
	MaxConflictRetries int

	// MaxFailures is how many consecutive poison attempts mark an instance
	// failed. If not set, 3 is used.
	MaxFailures int

	// ProcessedLimit bounds the IDs of applied events kept with each
	// instance for deduplication. If not set, 256 is used.
	ProcessedLimit int

	// HistoryLimit bounds each instance's history. If not set, the store's
	// default (100) is used.
	HistoryLimit int

	// TimeoutLinkAfter makes a timeout step whose timeout was scheduled
	// longer ago than this start a new trace linked to the scheduling
	// step, instead of continuing its trace. If not set, timeout steps
	// always continue the trace (unless LinkTimeouts).
	TimeoutLinkAfter time.Duration

	// LinkTimeouts makes every timeout step start a new trace linked to
	// the step that scheduled it.
	LinkTimeouts bool

	// RecoveryInterval is the pause between passes of
	// [Manager.RunRecovery]. If not set, 1s is used.
	RecoveryInterval time.Duration

	// RetryBackoff and MaxRetryBackoff bound the jittered pause before a
	// failed event is nacked, growing with the event's attempts:
	// watermill-redisstream resends a nacked message at once in the same
	// process, so without it a locked instance would be hammered. If not
	// set, 50ms and 1s are used.
	RetryBackoff, MaxRetryBackoff time.Duration

	// Now returns the current time, for tests. If not set, time.Now is
	// used.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Process == "" {
		host, _ := os.Hostname()
		c.Process = host + ":" + strconv.Itoa(os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LockTTL == 0 {
		c.LockTTL = 10 * time.Second
	}
	if c.LockWait == 0 {
		c.LockWait = 2 * time.Second
	}
	if c.MaxConflictRetries == 0 {
		c.MaxConflictRetries = 3
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 3
	}
	if c.ProcessedLimit == 0 {
		c.ProcessedLimit = 256
	}
	if c.RecoveryInterval == 0 {
		c.RecoveryInterval = time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 50 * time.Millisecond
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("missing Store"))
	}
	if c.Publisher == nil {
		errs = append(errs, errors.New("missing Publisher"))
	}
	if c.Marshaler == nil {
		errs = append(errs, errors.New("missing Marshaler"))
	}
	if c.GenerateCommandTopic == nil {
		errs = append(errs, errors.New("missing GenerateCommandTopic"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"LockTTL", c.LockTTL}, {"LockWait", c.LockWait}, {"TimeoutLinkAfter", c.TimeoutLinkAfter}, {"RecoveryInterval", c.RecoveryInterval}, {"RetryBackoff", c.RetryBackoff}, {"MaxRetryBackoff", c.MaxRetryBackoff}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("negative %s %s", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"MaxConflictRetries", c.MaxConflictRetries}, {"MaxFailures", c.MaxFailures}, {"ProcessedLimit", c.ProcessedLimit}, {"HistoryLimit", c.HistoryLimit}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("negative %s %d", n.name, n.v))
		}
	}
	return errors.Join(errs...)
}
