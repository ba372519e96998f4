package promobs

// Default cardinality caps of the projection metrics.
const (
	// DefaultMaxProjections is the default number of distinct projection
	// label values; see [WithMaxProjections].
	DefaultMaxProjections = 100
	// DefaultMaxPartitions is the default number of distinct partition
	// label values; see [WithMaxPartitions].
	DefaultMaxPartitions = 64
)

// A ProjectionOption configures the projection metrics of
// [NewProjectionHook] and [NewProjectionCollector]. The options shared with
// the message and saga metrics ([WithNamespace], [WithConstLabels],
// [WithBuckets], [WithLogger]) are ProjectionOptions too.
type ProjectionOption interface{ applyProjection(*projectionConfig) }

// projectionConfig is the shared config plus the projection-only caps.
type projectionConfig struct {
	config
	maxProjections, maxPartitions int
}

func (f optionFunc) applyProjection(c *projectionConfig) { f(&c.config) }

type projectionOptionFunc func(*projectionConfig)

func (f projectionOptionFunc) applyProjection(c *projectionConfig) { f(c) }

func newProjectionConfig(opts []ProjectionOption) projectionConfig {
	c := projectionConfig{config: defaultConfig(), maxProjections: DefaultMaxProjections, maxPartitions: DefaultMaxPartitions}
	for _, o := range opts {
		if o != nil {
			o.applyProjection(&c)
		}
	}
	return c
}

// WithMaxProjections caps the number of distinct projection label values
// of the projection metrics. Once n values have been seen, further ones
// are counted under "other". Values below 1 are ignored. If not set,
// [DefaultMaxProjections] is used.
func WithMaxProjections(n int) ProjectionOption {
	return projectionOptionFunc(func(c *projectionConfig) {
		if n > 0 {
			c.maxProjections = n
		}
	})
}

// WithMaxPartitions caps the number of distinct partition label values
// (partition indexes) of the projection metrics, and so the series per
// projection. Partitions past the cap are summed under "other". Values
// below 1 are ignored. If not set, [DefaultMaxPartitions] is used.
func WithMaxPartitions(n int) ProjectionOption {
	return projectionOptionFunc(func(c *projectionConfig) {
		if n > 0 {
			c.maxPartitions = n
		}
	})
}
