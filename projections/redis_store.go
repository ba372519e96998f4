package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// RedisStore is a [Store] and [Leaser] on Redis (standalone or Cluster).
// Every key of a partition carries the hash tag {projection:index}, so its
// checkpoint, lease, sink hashes and dead-letter stream share one Cluster
// slot and one Lua script writes them all:
//
//	{prefix}projection:{name:index}:checkpoint   hash: stream -> "id offset"
//	{prefix}projection:{name:index}:lease        string: owner's token
//	{prefix}projection:{name:index}:h:{hash}     sink hashes of the read model
//	{prefix}projection:{name:index}:deadletter   stream of dead letters
//	{prefix}projection:{name:index}:hashes       set of the sink hash names, for Drop
//	{prefix}projection:{name}:members            sorted set of live workers
//	{prefix}projection:{name}:generation         the active generation
//	{prefix}projection:{name}:generations        the last reserved generation
//
// After a replay (see [Worker.Replay]) the partitions' tag is
// {name@generation:index}: each generation has a keyspace of its own.
//
// Each commit runs the hook operation redis.checkpoint.save.{projection}
// (attributes projection_name, position) around that script.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisStore returns a RedisStore whose keys start with prefix, which
// must not contain '{' or '}' (they would change the hash tag).
func NewRedisStore(client redis.UniversalClient, prefix string) (*RedisStore, error) {
	if client == nil {
		return nil, errors.New("projections: nil Redis client")
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("projections: key prefix %q must not contain braces", prefix)
	}
	return &RedisStore{client: client, prefix: prefix}, nil
}

// Key returns the Redis key of suffix in partition p, for readers of the
// read model: Key(p, "h:"+hash) is a sink hash.
func (s *RedisStore) Key(p Partition, suffix string) string {
	return s.prefix + "projection:{" + p.String() + "}:" + suffix
}

// Load implements [Store].
func (s *RedisStore) Load(ctx context.Context, p Partition) (Checkpoint, error) {
	m, err := s.client.HGetAll(ctx, s.Key(p, "checkpoint")).Result()
	if err != nil {
		return nil, fmt.Errorf("cannot load checkpoint of %s: %w", p, err)
	}
	cp := make(Checkpoint, len(m))
	for stream, v := range m {
		pos, err := parsePosition(v)
		if err != nil {
			return nil, fmt.Errorf("cannot load checkpoint of %s, stream %s: %w", p, stream, err)
		}
		cp[stream] = pos
	}
	return cp, nil
}

func parsePosition(v string) (Position, error) {
	id, off, ok := strings.Cut(v, " ")
	if _, err := parseID(id); err != nil {
		return Position{}, err
	}
	pos := Position{ID: id, Offset: -1}
	if ok {
		n, err := strconv.ParseInt(off, 10, 64)
		if err != nil {
			return Position{}, fmt.Errorf("invalid offset %q", off)
		}
		pos.Offset = n
	}
	return pos, nil
}

func formatPosition(p Position) string { return p.ID + " " + strconv.FormatInt(p.Offset, 10) }

// commitScript writes a partition's batch atomically, after checking the
// lease token (fencing) and that the checkpoint is the one the batch was
// read from. KEYS: checkpoint, lease, dead-letter stream, sink hashes.
// ARGV: token, then counted groups: from (stream, id), to (stream, value),
// writes (op, key index, field, value), dead letters (field count, fields).
var commitScript = redis.NewScript(`
local token = ARGV[1]
if token ~= '' and redis.call('GET', KEYS[2]) ~= token then
  return 'fenced'
end
local i = 2
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local id = '0-0'
  if cur then id = string.match(cur, '^(%S+)') end
  if id ~= ARGV[i + 1] then return 'conflict' end
  i = i + 2
end
local to = {}
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  to[#to + 1] = ARGV[i]; to[#to + 1] = ARGV[i + 1]
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local op, key, field, value = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  redis.call('SADD', KEYS[4], key)
  if op == 's' then redis.call('HSET', key, field, value)
  elseif op == 'i' then redis.call('HINCRBY', key, field, value)
  else redis.call('HDEL', key, field) end
  i = i + 4
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local m = tonumber(ARGV[i]); i = i + 1
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, i, i + m - 1))
  i = i + m
end
if #to > 0 then redis.call('HSET', KEYS[1], unpack(to)) end
return 'ok'
`)

// Commit implements [Store].
func (s *RedisStore) Commit(ctx context.Context, c Commit) error {
	keys := []string{s.Key(c.Partition, "checkpoint"), s.Key(c.Partition, "lease"), s.Key(c.Partition, "deadletter"), s.Key(c.Partition, "hashes")}
	hashIndex := make(map[string]int)
	args := make([]any, 0, 4+2*len(c.From)+2*len(c.To)+4*len(c.Writes)+8*len(c.DeadLetters))
	args = append(args, c.Lease, len(c.From))
	for stream, p := range c.From {
		args = append(args, stream, canonicalID(p.ID))
	}
	args = append(args, len(c.To))
	for stream, p := range c.To {
		args = append(args, stream, formatPosition(Position{ID: canonicalID(p.ID), Offset: p.Offset}))
	}
	args = append(args, len(c.Writes))
	for _, w := range c.Writes {
		idx, ok := hashIndex[w.Hash]
		if !ok {
			keys = append(keys, s.Key(c.Partition, "h:"+w.Hash))
			idx = len(keys) // Lua indexes from 1
			hashIndex[w.Hash] = idx
		}
		switch w.Op {
		case OpSet:
			args = append(args, "s", idx, w.Field, w.Value)
		case OpIncr:
			args = append(args, "i", idx, w.Field, w.Delta)
		default:
			args = append(args, "d", idx, w.Field, "")
		}
	}
	args = append(args, len(c.DeadLetters))
	for _, dl := range c.DeadLetters {
		fields := deadLetterFields(dl)
		args = append(args, len(fields))
		args = append(args, fields...)
	}
	return contract.RunHooks(ctx, hooks.FromContext(ctx), "redis.checkpoint.save."+c.Partition.Projection, checkpointAttrs(c),
		func(ctx context.Context) error {
			res, err := commitScript.Run(ctx, s.client, keys, args...).Text()
			if err != nil {
				return fmt.Errorf("cannot commit %s: %w", c.Partition, err)
			}
			switch res {
			case "ok":
				return nil
			case "fenced":
				return ErrFenced
			case "conflict":
				return ErrConflict
			}
			return fmt.Errorf("cannot commit %s: unexpected reply %q", c.Partition, res)
		}, reportHookPanic(nil))
}

// deadLetterFields are the fields of a dead-letter entry: the message as
// watermill-redisstream's default marshaler writes it, so that a Watermill
// subscriber can read the dead-letter stream, plus where it came from and
// why it failed.
func deadLetterFields(dl DeadLetter) []any {
	return []any{
		FieldUUID, dl.Event.UUID,
		FieldMetadata, string(encodeMetadata(dl.Event.Metadata)),
		FieldPayload, string(dl.Event.Payload),
		"error", dl.Error,
		"source_stream", dl.Event.Stream,
		"source_id", dl.Event.ID,
	}
}

func canonicalID(id string) string {
	x, err := parseID(id)
	if err != nil {
		return id
	}
	return x.String()
}

// Hash implements [Store].
func (s *RedisStore) Hash(ctx context.Context, p Partition, hash string) (map[string]string, error) {
	m, err := s.client.HGetAll(ctx, s.Key(p, "h:"+hash)).Result()
	if err != nil {
		return nil, fmt.Errorf("cannot read hash %s of %s: %w", hash, p, err)
	}
	return m, nil
}

// DeadLetters implements [Store].
func (s *RedisStore) DeadLetters(ctx context.Context, p Partition) ([]DeadLetter, error) {
	msgs, err := s.client.XRange(ctx, s.Key(p, "deadletter"), "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("cannot read dead letters of %s: %w", p, err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		stream, _ := stringValue(m.Values["source_stream"])
		// An undecodable entry was dead-lettered without a UUID.
		ev := Event{Stream: stream, Metadata: message.Metadata{}}
		ev.UUID, _ = stringValue(m.Values[FieldUUID])
		payload, _ := stringValue(m.Values[FieldPayload])
		ev.Payload = []byte(payload)
		if raw, _ := stringValue(m.Values[FieldMetadata]); raw != "" {
			md, err := decodeMetadata([]byte(raw))
			if err != nil {
				return nil, fmt.Errorf("cannot read dead letter %s of %s: %w", m.ID, p, err)
			}
			if md != nil {
				ev.Metadata = md
			}
		}
		ev.ID, _ = stringValue(m.Values["source_id"])
		msg, _ := stringValue(m.Values["error"])
		out = append(out, DeadLetter{Event: ev, Error: msg})
	}
	return out, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Acquire implements [Leaser].
func (s *RedisStore) Acquire(ctx context.Context, p Partition, token string, ttl time.Duration) (bool, error) {
	ok, err := s.client.SetNX(ctx, s.Key(p, "lease"), token, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("cannot acquire lease of %s: %w", p, err)
	}
	return ok, nil
}

// Renew implements [Leaser].
func (s *RedisStore) Renew(ctx context.Context, p Partition, token string, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, s.client, []string{s.Key(p, "lease")}, token, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("cannot renew lease of %s: %w", p, err)
	}
	return n == 1, nil
}

// Release implements [Leaser].
func (s *RedisStore) Release(ctx context.Context, p Partition, token string) error {
	if err := releaseScript.Run(ctx, s.client, []string{s.Key(p, "lease")}, token).Err(); err != nil {
		return fmt.Errorf("cannot release lease of %s: %w", p, err)
	}
	return nil
}

// Heartbeat implements [Leaser], with a sorted set scored by the end of each
// member's heartbeat in the server's clock.
func (s *RedisStore) Heartbeat(ctx context.Context, projection, member string, ttl time.Duration) (int, error) {
	key := s.projectionKey(projection, "members")
	now, err := s.client.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("cannot heartbeat %s: %w", projection, err)
	}
	ms := now.UnixMilli()
	pipe := s.client.TxPipeline()
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(ms + ttl.Milliseconds()), Member: member})
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(ms, 10))
	card := pipe.ZCard(ctx, key)
	pipe.PExpire(ctx, key, 10*ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("cannot heartbeat %s: %w", projection, err)
	}
	return int(card.Val()), nil
}

func (s *RedisStore) projectionKey(projection, suffix string) string {
	return s.prefix + "projection:{" + projection + "}:" + suffix
}

// Generation implements [Store].
func (s *RedisStore) Generation(ctx context.Context, projection string) (int64, error) {
	n, err := s.client.Get(ctx, s.projectionKey(projection, "generation")).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read the generation of %s: %w", projection, err)
	}
	return n, nil
}

var newGenerationScript = redis.NewScript(`
local active = tonumber(redis.call('GET', KEYS[1]) or '0')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = math.max(active, last) + 1
redis.call('SET', KEYS[2], n)
return n
`)

// NewGeneration implements [Store].
func (s *RedisStore) NewGeneration(ctx context.Context, projection string) (int64, error) {
	keys := []string{s.projectionKey(projection, "generation"), s.projectionKey(projection, "generations")}
	n, err := newGenerationScript.Run(ctx, s.client, keys).Int64()
	if err != nil {
		return 0, fmt.Errorf("cannot reserve a generation of %s: %w", projection, err)
	}
	return n, nil
}

var swapScript = redis.NewScript(`
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// Swap implements [Store].
func (s *RedisStore) Swap(ctx context.Context, projection string, from, to int64) (bool, error) {
	n, err := swapScript.Run(ctx, s.client, []string{s.projectionKey(projection, "generation")}, from, to).Int()
	if err != nil {
		return false, fmt.Errorf("cannot swap the generation of %s: %w", projection, err)
	}
	return n == 1, nil
}

var dropScript = redis.NewScript(`
local hashes = redis.call('SMEMBERS', KEYS[1])
for _, h in ipairs(hashes) do redis.call('DEL', h) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return #hashes
`)

// Drop implements [Store]. The sink hashes are found in the set the
// commits keep.
func (s *RedisStore) Drop(ctx context.Context, p Partition) error {
	keys := []string{s.Key(p, "hashes"), s.Key(p, "checkpoint"), s.Key(p, "lease"), s.Key(p, "deadletter")}
	if err := dropScript.Run(ctx, s.client, keys).Err(); err != nil {
		return fmt.Errorf("cannot drop %s: %w", p, err)
	}
	return nil
}
