import { luaScript } from './client.ts';

/*
 * Every decision that must be atomic across replicas is one of these scripts: one round trip,
 * run by Redis without interleaving. Keys are built inside the scripts from the prefix (ARGV[1]),
 * so this works on a single Redis or Valkey (and a replicated one), not on Redis Cluster.
 * See docs/design/coordination.md for the key layout.
 *
 * Entries are stored as the exact JSON of src/domain/entry-codec.ts; scripts build finished
 * entries by concatenation from fragments the caller encoded, never by re-encoding JSON in Lua
 * (cjson would re-order keys and round numbers inside the query).
 */

const COMMON = `
local P = ARGV[1]
-- Sets a key's expiry to 'at' unless it already lives longer: life only grows.
local function grow(key, at)
  local cur = redis.call('PEXPIRETIME', key)
  if cur == -2 then return end
  if cur == -1 or cur < at then redis.call('PEXPIREAT', key, at) end
end
local function growBlob(digest, at)
  local b = P .. 'b:' .. digest
  if redis.call('EXISTS', b) == 1 then
    grow(b, at)
    redis.call('ZADD', P .. 'bmeta', 'GT', at, digest)
  end
end
`;

/**
 * Rules 1–3 for one POST.
 * ARGV: prefix, hash, id, expiresAt, now, pendingJson, reuseMs, leaseMs, token, queryJson, member
 * Returns {'hit', id} | {'shared', id[, imageJson]} | {'miss', id} | {'taken'} (id exists: retry).
 */
export const DECIDE = luaScript(`${COMMON}
local hash, id = ARGV[2], ARGV[3]
local exp, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local reuse, lease = tonumber(ARGV[7]), tonumber(ARGV[8])
local q, h, w = P .. 'q:' .. hash, P .. 'h:' .. hash, P .. 'w:' .. hash

-- Rule 1: the longest-lived pending or image entry of the query, if it lives long enough.
redis.call('ZREMRANGEBYSCORE', h, '-inf', now)
for _ = 1, 8 do
  local top = redis.call('ZRANGE', h, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
  if not top[1] or tonumber(top[2]) < exp then break end
  if redis.call('EXISTS', P .. 'e:' .. top[1]) == 1 then return {'hit', top[1]} end
  redis.call('ZREM', h, top[1]) -- deleted before its expiry (lost bytes): look again
end

if redis.call('EXISTS', P .. 'e:' .. id) == 1 then return {'taken'} end

local function index(kind, json)
  redis.call('SET', P .. 'e:' .. id, json, 'PXAT', exp)
  redis.call('ZADD', P .. 'c', 0, ARGV[11])
  redis.call('ZADD', P .. 'x', exp, ARGV[11])
  redis.call('ZADD', P .. 'k:' .. kind, exp, id)
  redis.call('ZADD', h, exp, id)
  grow(h, exp)
  grow(q, exp)
end

-- Rule 2: join the flight in progress...
if redis.call('HEXISTS', q, 'token') == 1 then
  index('pending', ARGV[6])
  redis.call('SADD', w, id)
  grow(w, exp)
  return {'shared', id}
end
-- ... or reuse an image fetched within REUSE_WINDOW whose bytes are still there.
local last = redis.call('HMGET', q, 'last', 'lastFetched', 'lastDigest')
if last[1] and now - tonumber(last[2]) <= reuse and redis.call('EXISTS', P .. 'b:' .. last[3]) == 1 then
  local json = '{"v":1,"id":"' .. id .. '","hash":"' .. hash .. '","expiresAt":' .. ARGV[4] ..
    ',"createdAt":' .. ARGV[5] .. ',"kind":"image",' .. last[1] .. '}'
  index('image', json)
  growBlob(last[3], exp)
  return {'shared', id, json}
end

-- Rule 3: a new flight, whose lease the caller holds.
redis.call('HSET', q, 'token', ARGV[9], 'leaseUntil', now + lease, 'query', ARGV[10], 'first', id)
redis.call('ZADD', P .. 'flights', now + lease, hash)
index('pending', ARGV[6])
redis.call('SADD', w, id)
grow(w, exp)
return {'miss', id}
`);

/**
 * ARGV: prefix, hash, token, kind, fragment, digest, fetchedAt, reuseMs
 * Writes the outcome into every pending id waiting on the flight, if the token still holds it.
 * Returns {'accepted', {ids}} | {'rejected'} | {'nobytes'}.
 */
export const SETTLE = luaScript(`${COMMON}
local hash, token, kind, frag, digest = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local q, h, w = P .. 'q:' .. hash, P .. 'h:' .. hash, P .. 'w:' .. hash
if redis.call('HGET', q, 'token') ~= token then return {'rejected'} end
if kind == 'image' and redis.call('EXISTS', P .. 'b:' .. digest) == 0 then return {'nobytes'} end
local done = {}
for _, id in ipairs(redis.call('SMEMBERS', w)) do
  local cur = redis.call('GET', P .. 'e:' .. id)
  -- The entry's own kind comes before its query in the JSON; a finished entry cannot match
  -- (quotes inside its message are escaped).
  if cur and string.find(cur, '"kind":"pending"', 1, true) then
    local e = string.match(cur, '"expiresAt":(%d+)')
    local c = string.match(cur, '"createdAt":(%d+)')
    local json = '{"v":1,"id":"' .. id .. '","hash":"' .. hash .. '","expiresAt":' .. e ..
      ',"createdAt":' .. c .. ',"kind":"' .. kind .. '",' .. frag .. '}'
    redis.call('SET', P .. 'e:' .. id, json, 'KEEPTTL')
    redis.call('ZREM', P .. 'k:pending', id)
    redis.call('ZADD', P .. 'k:' .. kind, e, id)
    if kind == 'image' then growBlob(digest, tonumber(e)) else redis.call('ZREM', h, id) end
    done[#done + 1] = id
  end
end
redis.call('DEL', w)
redis.call('HDEL', q, 'token', 'leaseUntil', 'query', 'first')
redis.call('ZREM', P .. 'flights', hash)
if kind == 'image' then
  local keep = tonumber(ARGV[7]) + tonumber(ARGV[8])
  redis.call('HSET', q, 'last', frag, 'lastFetched', ARGV[7], 'lastDigest', digest)
  grow(q, keep)
  -- The bytes stay through REUSE_WINDOW, so rule 2 can still hand them out.
  growBlob(digest, keep)
end
redis.call('PUBLISH', P .. 'ev', 's|' .. hash)
return {'accepted', done}
`);

/** ARGV: prefix, hash, token, now, leaseMs. Returns 1 if renewed, 0 if the lease was lost. */
export const RENEW = luaScript(`${COMMON}
local q = P .. 'q:' .. ARGV[2]
if redis.call('HGET', q, 'token') ~= ARGV[3] then return 0 end
local untilMs = tonumber(ARGV[4]) + tonumber(ARGV[5])
redis.call('HSET', q, 'leaseUntil', untilMs)
redis.call('ZADD', P .. 'flights', untilMs, ARGV[2])
return 1
`);

/**
 * ARGV: prefix, now, leaseMs, tokenPrefix, max. Takes over flights whose lease ran out.
 * Returns {{hash, token, query, id}, …}. A flight no live id waits on any more is dropped.
 */
export const CLAIM = luaScript(`${COMMON}
local now, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local hashes = redis.call('ZRANGEBYSCORE', P .. 'flights', '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for i, hash in ipairs(hashes) do
  local q, w = P .. 'q:' .. hash, P .. 'w:' .. hash
  local query = redis.call('HGET', q, 'query')
  local live = nil
  if query then
    for _, id in ipairs(redis.call('SMEMBERS', w)) do
      if redis.call('EXISTS', P .. 'e:' .. id) == 1 then live = id break end
    end
  end
  if not live then
    redis.call('ZREM', P .. 'flights', hash)
    redis.call('HDEL', q, 'token', 'leaseUntil', 'query', 'first')
    redis.call('DEL', w)
  else
    local token = ARGV[4] .. ':' .. i
    redis.call('HSET', q, 'token', token, 'leaseUntil', now + lease)
    redis.call('ZADD', P .. 'flights', now + lease, hash)
    out[#out + 1] = {hash, token, query, live}
  end
end
return out
`);

/** ARGV: prefix, hash, token. Ends the lease now and tells the others to claim it. */
export const RELEASE = luaScript(`${COMMON}
local q = P .. 'q:' .. ARGV[2]
if redis.call('HGET', q, 'token') ~= ARGV[3] then return 0 end
redis.call('HSET', q, 'leaseUntil', 0)
redis.call('ZADD', P .. 'flights', 0, ARGV[2])
redis.call('PUBLISH', P .. 'ev', 'o|' .. ARGV[2])
return 1
`);

/** ARGV: prefix, digest, keepUntil, size, bytes. Stores bytes once; their life only grows. */
export const PUT_BLOB = luaScript(`${COMMON}
local digest, keep = ARGV[2], tonumber(ARGV[3])
local b = P .. 'b:' .. digest
if redis.call('SET', b, ARGV[5], 'NX', 'PXAT', keep) then
  local old = redis.call('HGET', P .. 'bsize', digest)
  if old then redis.call('DECRBY', P .. 'bytes', old) end
  redis.call('HSET', P .. 'bsize', digest, ARGV[4])
  redis.call('INCRBY', P .. 'bytes', ARGV[4])
  redis.call('ZADD', P .. 'bmeta', keep, digest)
else
  growBlob(digest, keep)
end
return 1
`);

/**
 * ARGV: prefix, digest, id or '', deleteBytes (1/0). Bytes lost or damaged: drop them and the id
 * that found out, and tell every replica (the others drop their memory copies).
 */
export const DROP = luaScript(`${COMMON}
local digest, id = ARGV[2], ARGV[3]
if ARGV[4] == '1' then redis.call('DEL', P .. 'b:' .. digest) end
if redis.call('EXISTS', P .. 'b:' .. digest) == 0 then
  local size = redis.call('HGET', P .. 'bsize', digest)
  if size then redis.call('DECRBY', P .. 'bytes', size) end
  redis.call('HDEL', P .. 'bsize', digest)
  redis.call('ZREM', P .. 'bmeta', digest)
end
if id ~= '' then
  redis.call('DEL', P .. 'e:' .. id)
  for _, k in ipairs({'pending', 'image', 'error'}) do redis.call('ZREM', P .. 'k:' .. k, id) end
  redis.call('ZREM', P .. 'h:' .. string.sub(id, 1, 64), id)
end
redis.call('PUBLISH', P .. 'ev', 'd|' .. digest .. '|' .. id)
return 1
`);

/**
 * ARGV: prefix, token, now, leaseMs, limit. One of 'limit' upstream slots across the cluster; a
 * holder that dies frees its slot when its lease runs out. Returns 0 when taken, else the ms
 * after which to try again.
 */
export const ACQUIRE_SLOT = luaScript(`${COMMON}
local s = P .. 'slots'
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', s, '-inf', now)
if redis.call('ZSCORE', s, ARGV[2]) or redis.call('ZCARD', s) < tonumber(ARGV[5]) then
  redis.call('ZADD', s, now + tonumber(ARGV[4]), ARGV[2])
  return 0
end
local first = redis.call('ZRANGE', s, 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
`);

/** ARGV: prefix, token, now, leaseMs. Renews a slot's lease if it is still held. */
export const RENEW_SLOT = luaScript(`${COMMON}
return redis.call('ZADD', P .. 'slots', 'XX', tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[2])
`);

/** ARGV: prefix, token. */
export const RELEASE_SLOT = luaScript(`${COMMON}
if redis.call('ZREM', P .. 'slots', ARGV[2]) == 1 then redis.call('PUBLISH', P .. 'ev', 'r|') end
return 1
`);

/** ARGV: prefix, untilMs. The cluster-wide Retry-After hold only grows. */
export const HOLD = luaScript(`${COMMON}
local cur = tonumber(redis.call('GET', P .. 'hold') or '0')
local v = tonumber(ARGV[2])
if v > cur then redis.call('SET', P .. 'hold', ARGV[2], 'PXAT', v) end
return 1
`);

/** ARGV: prefix, now. Returns {pending, image, error, storedBytes}. */
export const COUNTS = luaScript(`${COMMON}
local now = '(' .. ARGV[2]
return {
  redis.call('ZCOUNT', P .. 'k:pending', now, '+inf'),
  redis.call('ZCOUNT', P .. 'k:image', now, '+inf'),
  redis.call('ZCOUNT', P .. 'k:error', now, '+inf'),
  tonumber(redis.call('GET', P .. 'bytes') or '0'),
}
`);

/**
 * ARGV: prefix, now, max. Trims the indexes of what expired (Redis already dropped the keys) and
 * accounts for bytes that expired. Idempotent: any replica may run it. Returns {expired, blobs}.
 */
export const MAINTAIN = luaScript(`${COMMON}
local now, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local ex = redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', now, 'LIMIT', 0, max)
for i = 1, #ex, 500 do
  local chunk = {unpack(ex, i, math.min(i + 499, #ex))}
  redis.call('ZREM', P .. 'c', unpack(chunk))
  redis.call('ZREM', P .. 'x', unpack(chunk))
end
for _, k in ipairs({'pending', 'image', 'error'}) do
  redis.call('ZREMRANGEBYSCORE', P .. 'k:' .. k, '-inf', now)
end
local gone = 0
for _, digest in ipairs(redis.call('ZRANGEBYSCORE', P .. 'bmeta', '-inf', now, 'LIMIT', 0, max)) do
  if redis.call('EXISTS', P .. 'b:' .. digest) == 0 then
    local size = redis.call('HGET', P .. 'bsize', digest)
    if size then redis.call('DECRBY', P .. 'bytes', size) end
    redis.call('HDEL', P .. 'bsize', digest)
    redis.call('ZREM', P .. 'bmeta', digest)
    gone = gone + 1
  else
    redis.call('ZADD', P .. 'bmeta', redis.call('PEXPIRETIME', P .. 'b:' .. digest), digest)
  end
end
redis.call('ZREMRANGEBYSCORE', P .. 'slots', '-inf', now)
return {#ex, gone}
`);
