package sagas

import "github.com/redis/go-redis/v9"

// The scripts of [RedisStore]. Each one touches only keys under one hash tag
// (one instance and the index keys of its bucket), so it runs on one Redis
// Cluster slot. A script checks everything it can refuse before its first
// write, because Redis does not roll back the writes of a script that
// fails half-way.

// saveScript is [RedisStore.Save]'s compare-and-set.
//
// KEYS: 1 instance hash, 2 history list, 3 pending set, 4 timeouts zset,
// 5 active zset.
//
// ARGV: 1 expected version, 2 instance ID, 3 history record (JSON),
// 4 history limit, 5 "1" when the instance has pending messages,
// 6 "1" when it is active, 7 StartedAt in unix ms, 8 n = number of
// field/value arguments that follow, 9..8+n the instance hash fields and
// values, then score/member pairs of the new timeouts.
//
// It returns {1, new version} on success and {0, stored version} on a
// version conflict, having written nothing.
var saveScript = redis.NewScript(`
local stored = redis.call('HGET', KEYS[1], 'version')
local current = 0
if stored then
  current = tonumber(stored)
  if current == nil then
    return redis.error_reply('stored version field is not a number')
  end
end
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end

local old = redis.call('HGET', KEYS[1], 'timeouts')
local oldList = {}
if old and old ~= '' then
  local ok, decoded = pcall(cjson.decode, old)
  if not ok or type(decoded) ~= 'table' then
    return redis.error_reply('stored timeouts field does not decode')
  end
  oldList = decoded
end

local id = ARGV[2]
for _, t in ipairs(oldList) do
  if type(t) == 'table' and type(t.id) == 'string' then
    redis.call('ZREM', KEYS[4], id .. '\0' .. t.id)
  end
end

local n = tonumber(ARGV[8])
redis.call('HSET', KEYS[1], unpack(ARGV, 9, 8 + n))
for i = 9 + n, #ARGV, 2 do
  redis.call('ZADD', KEYS[4], ARGV[i], ARGV[i + 1])
end

if ARGV[5] == '1' then
  redis.call('SADD', KEYS[3], id)
else
  redis.call('SREM', KEYS[3], id)
end
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[5], ARGV[7], id)
else
  redis.call('ZREM', KEYS[5], id)
end

redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
return {1, current + 1}
`)

// markSentScript is [RedisStore.MarkSent].
//
// KEYS: 1 instance hash, 2 pending set. ARGV: 1 instance ID, 2.. the UUIDs
// of the messages sent.
//
// It returns how many pending messages it removed. A missing instance is
// left missing (0). The pending field is rewritten only when something was
// removed; an empty list is written as "[]" (cjson would encode "{}").
var markSentScript = redis.NewScript(`
local raw = redis.call('HGET', KEYS[1], 'pending')
if not raw then
  return 0
end
local list = {}
if raw ~= '' then
  local ok, decoded = pcall(cjson.decode, raw)
  if not ok or type(decoded) ~= 'table' then
    return redis.error_reply('stored pending field does not decode')
  end
  list = decoded
end

local drop = {}
for i = 2, #ARGV do
  drop[ARGV[i]] = true
end
local keep = {}
for _, m in ipairs(list) do
  if not (type(m) == 'table' and drop[m.uuid]) then
    keep[#keep + 1] = m
  end
end

local removed = #list - #keep
if #keep == 0 then
  if removed > 0 then
    redis.call('HSET', KEYS[1], 'pending', '[]')
  end
  redis.call('SREM', KEYS[2], ARGV[1])
elseif removed > 0 then
  redis.call('HSET', KEYS[1], 'pending', cjson.encode(keep))
end
return removed
`)

// unlockScript is [RedisStore.Unlock]: it deletes the lock key only while it
// holds the caller's token. KEYS: 1 lock. ARGV: 1 token. It returns 1 when
// it released the lock, else 0.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)
