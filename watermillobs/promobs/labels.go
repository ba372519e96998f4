package promobs

import (
	"strings"
	"sync"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// Label values that do not come from messages.
const (
	// otherValue replaces label values past a cardinality cap.
	otherValue = "other"
	// unknownValue replaces an empty topic or handler name.
	unknownValue = "unknown"
)

// labelValue bounds an untrusted value for use as a label: valid UTF-8 of at
// most bound.Label bytes, and unknownValue when empty. It does not allocate
// for short valid values.
func labelValue(v string) string {
	if v == "" {
		return unknownValue
	}
	return bound.String(v, bound.Label)
}

// A labelSet admits up to max distinct values of one label and folds the
// rest into otherValue. It is safe for concurrent use. The set is shared by
// all series of a label family, so the cap holds however the label combines
// with others.
type labelSet struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

func newLabelSet(max int) *labelSet {
	return &labelSet{max: max, seen: make(map[string]struct{})}
}

// value returns v if it is admitted, else otherValue.
func (s *labelSet) value(v string) string {
	s.mu.RLock()
	_, ok := s.seen[v]
	full := len(s.seen) >= s.max
	s.mu.RUnlock()
	if ok {
		return v
	}
	if full {
		return otherValue
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[v]; ok {
		return v
	}
	if len(s.seen) >= s.max {
		return otherValue
	}
	// Clone: v may share memory with a large metadata or payload buffer.
	s.seen[strings.Clone(v)] = struct{}{}
	return v
}

// A cache maps a key of label values to resolved children, so that the hot
// path does one map lookup under a read lock instead of hashing label values
// for each instrument. Keys are capped label values (or raw values that were
// admitted by their labelSet), so the cache is bounded by the product of the
// caps.
type cache[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]*V
}

func newCache[K comparable, V any]() *cache[K, V] {
	return &cache[K, V]{m: make(map[K]*V)}
}

func (c *cache[K, V]) load(k K) *V {
	c.mu.RLock()
	v := c.m[k]
	c.mu.RUnlock()
	return v
}

// store keeps v for k unless another goroutine stored first, and returns the
// value in the cache.
func (c *cache[K, V]) store(k K, v *V) *V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok {
		return old
	}
	c.m[k] = v
	return v
}
