package sagas

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Defaults of [RedisStoreConfig].
const (
	DefaultRedisPrefix       = "saga:"
	DefaultRedisBuckets      = 16
	DefaultRedisHistoryLimit = 100
)

// maxRedisBuckets is the number of Redis Cluster slots: more buckets than
// slots cannot spread the indexes further.
const maxRedisBuckets = 16384

// RedisStoreConfig configures a [RedisStore]. The zero value is valid and
// means the defaults.
type RedisStoreConfig struct {
	// Prefix starts every key the store writes. It must not contain '{' or
	// '}', which would change the keys' hash tag. If not set,
	// DefaultRedisPrefix ("saga:") is used.
	Prefix string
	// Buckets is the number of index buckets per saga type. Instances are
	// spread over the buckets by a hash of their ID, and each bucket's
	// indexes live on one Redis Cluster slot together with its instances,
	// so more buckets spread a saga type over more cluster nodes; the
	// global queries (WithPending, DueTimeouts, Active) read every bucket.
	//
	// It must stay the same for the life of the data: changing it moves
	// instances to other keys, so the stored instances and their index
	// entries are orphaned (no longer found). If not set,
	// DefaultRedisBuckets (16) is used.
	Buckets int
	// HistoryLimit is how many step records are kept per instance when a
	// SaveRequest does not set its own. If not set,
	// DefaultRedisHistoryLimit (100) is used.
	HistoryLimit int
}

func (c *RedisStoreConfig) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultRedisPrefix
	}
	if c.Buckets == 0 {
		c.Buckets = DefaultRedisBuckets
	}
	if c.HistoryLimit == 0 {
		c.HistoryLimit = DefaultRedisHistoryLimit
	}
}

// Validate reports every problem of c, joined.
func (c RedisStoreConfig) Validate() error {
	var err error
	if strings.ContainsAny(c.Prefix, "{}") {
		err = errors.Join(err, fmt.Errorf("field Prefix %q must not contain '{' or '}'", c.Prefix))
	}
	if c.Buckets < 0 || c.Buckets > maxRedisBuckets {
		err = errors.Join(err, fmt.Errorf("field Buckets must be between 1 and %d, got %d", maxRedisBuckets, c.Buckets))
	}
	if c.HistoryLimit < 0 {
		err = errors.Join(err, fmt.Errorf("field HistoryLimit must not be negative, got %d", c.HistoryLimit))
	}
	return err
}

// RedisStore is the [Store] on Redis, standalone or Cluster.
//
// # Keys
//
// An instance of saga type T with ID id lives in bucket b = FNV-1a(id) mod
// Buckets, and every key of it, and of its bucket's indexes, has the hash
// tag {T:b}, so that each write (one Lua script) touches one cluster slot:
//
//	<prefix>{T:b}:inst:<id>   hash: version, status, outcome, state,
//	                          processed, pending, timeouts (JSON), failures,
//	                          last_error, started_at, updated_at (RFC 3339)
//	<prefix>{T:b}:hist:<id>   list of StepRecord JSON, oldest first
//	<prefix>{T:b}:lock:<id>   the instance lock's token, with a TTL
//	<prefix>{T:b}:pending     set of the IDs with pending messages
//	<prefix>{T:b}:timeouts    zset of "<id>\x00<timeout ID>" by due unix ms
//	<prefix>{T:b}:active      zset of active IDs by StartedAt unix ms
//
// Saga types and IDs must be non-empty and must not contain '{' or '}'; IDs
// must not contain a NUL byte either. Other values are refused with an
// error.
//
// Times in the indexes have millisecond precision: a timeout's due time is
// rounded up to the millisecond (so it is never reported early), and Active
// reports the oldest StartedAt truncated to the millisecond. Instance fields
// keep nanoseconds.
type RedisStore struct {
	client       redis.UniversalClient
	prefix       string
	buckets      int
	historyLimit int

	// pendingStart rotates the bucket WithPending starts from, so that
	// the buckets share a small limit fairly.
	pendingStart atomic.Uint32
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a [RedisStore] on client (a *redis.Client or a
// *redis.ClusterClient). client is required.
func NewRedisStore(client redis.UniversalClient, config RedisStoreConfig) (*RedisStore, error) {
	config.setDefaults()
	err := config.Validate()
	if client == nil {
		err = errors.Join(errors.New("client is required"), err)
	}
	if err != nil {
		return nil, fmt.Errorf("sagas: invalid config: %w", err)
	}
	return &RedisStore{
		client:       client,
		prefix:       config.Prefix,
		buckets:      config.Buckets,
		historyLimit: config.HistoryLimit,
	}, nil
}

// bucket returns the bucket of the instance id.
func (s *RedisStore) bucket(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(s.buckets))
}

// tagged returns "<prefix>{T:b}:", which starts every key of bucket b of
// sagaType.
func (s *RedisStore) tagged(sagaType string, b int) string {
	return s.prefix + "{" + sagaType + ":" + strconv.Itoa(b) + "}:"
}

// instanceKeys names the keys of one instance and of its bucket's indexes.
type instanceKeys struct {
	inst, hist, lock, pending, timeouts, active string
}

func (s *RedisStore) keys(sagaType, id string) instanceKeys {
	t := s.tagged(sagaType, s.bucket(id))
	return instanceKeys{
		inst:     t + "inst:" + id,
		hist:     t + "hist:" + id,
		lock:     t + "lock:" + id,
		pending:  t + "pending",
		timeouts: t + "timeouts",
		active:   t + "active",
	}
}

// checkType refuses a saga type that would break the hash tag.
func checkType(sagaType string) error {
	if sagaType == "" {
		return errors.New("sagas: empty saga type")
	}
	if strings.ContainsAny(sagaType, "{}") {
		return fmt.Errorf("sagas: saga type %q must not contain '{' or '}'", sagaType)
	}
	return nil
}

// checkInstance refuses a saga type or ID that would break the keys.
func checkInstance(sagaType, id string) error {
	if err := checkType(sagaType); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("sagas: empty instance ID for saga type %q", sagaType)
	}
	if strings.ContainsAny(id, "{}\x00") {
		return fmt.Errorf("sagas: instance ID %q of saga type %q must not contain '{', '}' or NUL", id, sagaType)
	}
	return nil
}
