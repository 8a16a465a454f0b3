/**
 * The Lua scripts of the Redis store. Each runs atomically on the Redis
 * server, reads the time from the server (`TIME`), so replicas' clocks do not
 * matter, and first drops the leases that have run out (telling every replica
 * on the semaphore's channel).
 *
 * Every script takes the same keys, in this order:
 *
 * | key        | type   | holds                                                  |
 * | ---------- | ------ | ------------------------------------------------------ |
 * | `leases`   | zset   | token → expiry (server milliseconds)                   |
 * | `info`     | hash   | token → `ACQUIRED_AT` or `ACQUIRED_AT ID`              |
 * | `ids`      | hash   | id → token                                             |
 * | `line`     | zset   | ticket (`REPLICA/N`, or `#ID`) → arrival number        |
 * | `tickets`  | hash   | ticket → the waiting client's id (`""` when anonymous) |
 * | `owners`   | hash   | `#ID` ticket → the replica its client waits on now     |
 * | `away`     | zset   | `#ID` ticket → when its kept place ends (server ms)    |
 * | `replicas` | zset   | replica → heartbeat deadline (server milliseconds)     |
 * | `seq`      | string | the last arrival number given out                      |
 * | `config`   | hash   | `capacity` → the number of slots, `beat` → the last    |
 * |            |        | heartbeat of any replica (server milliseconds)         |
 *
 * and begins its arguments with the channel and the calling replica's name.
 * A lease comes back as `{token, id or false, acquiredAt, expiresAt}`, with
 * the server's `now` beside it. Ids are printable ASCII without spaces
 * (`lib/protocol.ts`), so a space separates them from the time in `info`.
 *
 * A client that gives its id has one ticket, `#ID`, whichever replica its
 * request reaches: the place belongs to the id, cluster-wide. The replica
 * that joins it last owns it (it holds the waiting request). While its
 * client is away between two requests the ticket keeps its place for a grace
 * (`away`), holding up nobody; a request through any replica takes it back.
 * Anonymous tickets are named after their replica (`REPLICA/N`); replica
 * names never begin with `#`.
 *
 * @module
 */

/** The key names, in the order the scripts take them. */
export const KEY_NAMES = [
  "leases",
  "info",
  "ids",
  "line",
  "tickets",
  "replicas",
  "seq",
  "config",
  "owners",
  "away",
] as const;

/**
 * When no replica has beaten for this long, Redis (or the way to it) was gone
 * for all of them: none is counted dead for that time. Replicas beat every
 * second (`BEAT_INTERVAL_MS`) and count as dead after 3 (`TICKET_TTL_MS`), so
 * 2 s of silence means that nobody could beat, while a live replica's
 * heartbeat still has time left.
 */
export const SILENCE_MS = 2_000;

const PRELUDE = `
local leases, info, ids, line, tickets, replicas, seq, config, owners, away =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local channel, self = ARGV[1], ARGV[2]
local SILENCE_MS = ${SILENCE_MS}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function lease(token)
  local expires = redis.call('ZSCORE', leases, token)
  if not expires then return false end
  local v = redis.call('HGET', info, token) or '0'
  local sep = string.find(v, ' ', 1, true)
  if sep then
    return {token, string.sub(v, sep + 1), tonumber(string.sub(v, 1, sep - 1)), tonumber(expires)}
  end
  return {token, false, tonumber(v), tonumber(expires)}
end

local function drop(token)
  local l = lease(token)
  redis.call('ZREM', leases, token)
  redis.call('HDEL', info, token)
  if l and l[2] and redis.call('HGET', ids, l[2]) == token then redis.call('HDEL', ids, l[2]) end
  return l
end

-- Drops the leases that have run out; tells every replica.
local function sweep()
  local gone = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  local expired = {}
  for i, token in ipairs(gone) do expired[i] = drop(token) end
  if #gone > 0 then redis.call('PUBLISH', channel, self) end
  return expired
end

-- Milliseconds until the soonest lease runs out, or -1 when none is held.
local function soonest()
  local first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) - now end
  return -1
end

-- Whether a ticket is an id's (\`#ID\`), which any replica may take over.
local function byId(ticket)
  return string.sub(ticket, 1, 1) == '#'
end

local function owner(ticket)
  if byId(ticket) then return redis.call('HGET', owners, ticket) end
  return string.match(ticket, '^(.*)/[^/]*$')
end

-- Takes a ticket out of line for good.
local function remove(ticket)
  redis.call('ZREM', line, ticket)
  redis.call('HDEL', tickets, ticket)
  if byId(ticket) then
    redis.call('HDEL', owners, ticket)
    redis.call('ZREM', away, ticket)
  end
end

-- Whether an id's client is away: its place is kept, but it holds up nobody. A kept place
-- whose grace ran out is dropped on the way.
local function isAway(ticket)
  if not byId(ticket) then return false end
  local ends = redis.call('ZSCORE', away, ticket)
  if not ends then return false end
  if tonumber(ends) <= now then remove(ticket) end
  return true
end

local function alive(ticket)
  local replica = owner(ticket)
  local deadline = replica and redis.call('ZSCORE', replicas, replica)
  return deadline and tonumber(deadline) > now
end

-- After a silence of every replica (Redis stopped, frozen or out of reach), nobody could beat:
-- each replica gets back the time it had left, so that no live replica's tickets are dropped.
local function catchUp()
  local last = tonumber(redis.call('HGET', config, 'beat'))
  if last and now - last > SILENCE_MS then
    for _, r in ipairs(redis.call('ZRANGE', replicas, 0, -1)) do
      redis.call('ZINCRBY', replicas, now - last, r)
    end
    redis.call('HSET', config, 'beat', now)
  end
end

-- How many live tickets of other replicas wait ahead of this replica's first ticket in line
-- (ahead of any ticket when ticket is ''), counting up to limit; drops the tickets of replicas
-- that stopped beating on the way. A replica serves its own waiters in its own order, so its
-- first ticket is its place, whichever of its waiters asks. Returns the count and that ticket.
local function ahead(ticket, limit)
  local count, start = 0, 0
  while count < limit do
    local batch = redis.call('ZRANGE', line, start, start + 63)
    if #batch == 0 then return count, false end
    local gone = {}
    for _, m in ipairs(batch) do
      if isAway(m) then
        -- Kept for its client, or dropped just now: it holds up nobody.
        if not redis.call('ZSCORE', line, m) then gone[#gone + 1] = m end
      elseif ticket ~= '' and (m == ticket or owner(m) == self) then
        for _, d in ipairs(gone) do remove(d) end
        return count, m
      elseif alive(m) then
        count = count + 1
        if count >= limit then break end
      else
        gone[#gone + 1] = m
      end
    end
    for _, d in ipairs(gone) do remove(d) end
    start = start + #batch - #gone
  end
  return count, false
end

-- Puts a ticket in line, or back at its old place (score, for an anonymous ticket). An id's
-- ticket keeps the place it first took, whichever replica joins it: that replica owns it now.
local function join(ticket, id, score)
  local placed = redis.call('ZSCORE', line, ticket)
  if byId(ticket) then
    if placed and isAway(ticket) then placed = redis.call('ZSCORE', line, ticket) end
    redis.call('HSET', owners, ticket, self)
    redis.call('ZREM', away, ticket)
    score = ''
  end
  if placed then return tonumber(placed) end
  local s = tonumber(score)
  if not s then s = redis.call('INCR', seq) end
  redis.call('ZADD', line, s, ticket)
  redis.call('HSET', tickets, ticket, id)
  return s
end
`;

/**
 * `acquire`: ARGV = channel, replica, capacity, durationMs, id, ticket, token.
 * Returns `{1, now, soonest, lease, existing, expired}` for a grant, or
 * `{0, now, soonest, nextFreeInMs, waitingAhead, expired}`.
 * A ticket (`""` for none) is put in line if it is not there yet, and counts
 * as waiting at its replica's first place; without one, any live ticket waits
 * ahead.
 */
export const ACQUIRE = PRELUDE + `
local capacity, duration, id, ticket, token =
  tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local expired = sweep()
if id ~= '' then
  local heldBy = redis.call('HGET', ids, id)
  if heldBy and redis.call('ZSCORE', leases, heldBy) then
    -- Asking again starts the lock afresh, for what is asked now.
    redis.call('ZADD', leases, 'XX', now + duration, heldBy)
    return {1, now, soonest(), lease(heldBy), 1, expired}
  end
end
if ticket ~= '' then join(ticket, id, '') end
local held = redis.call('ZCARD', leases)
local free = capacity - held
local waiting, first = 0, false
if free > 0 then
  catchUp()
  waiting, first = ahead(ticket, free)
end
if free <= 0 or waiting >= free then
  local nextFree = 0
  if held >= capacity then
    local nth = redis.call('ZRANGE', leases, held - capacity, held - capacity, 'WITHSCORES')
    nextFree = math.max(0, tonumber(nth[2]) - now)
  end
  return {0, now, soonest(), nextFree, waiting, expired}
end
local expires = now + duration
redis.call('ZADD', leases, expires, token)
if id ~= '' then
  redis.call('HSET', info, token, now .. ' ' .. id)
  redis.call('HSET', ids, id, token)
else
  redis.call('HSET', info, token, now)
end
if ticket ~= '' then
  -- The replica's first place goes with the grant; its ticket there takes this one's place.
  -- An id's ticket keeps its own place: it is the id's, not the replica's.
  if first and first ~= ticket and not byId(first) then
    redis.call('ZADD', line, redis.call('ZSCORE', line, ticket), first)
  end
  remove(ticket)
  -- Slots are still free and others wait: let them ask.
  if free > 1 and redis.call('ZCARD', line) > 0 then redis.call('PUBLISH', channel, self) end
end
return {1, now, soonest(), lease(token), 0, expired}
`;

/** `release`: ARGV = channel, replica, token. Returns `{now, soonest, lease or false, expired}`. */
export const RELEASE = PRELUDE + `
local expired = sweep()
local l = false
if redis.call('ZSCORE', leases, ARGV[3]) then
  l = drop(ARGV[3])
  redis.call('PUBLISH', channel, self)
end
return {now, soonest(), l, expired}
`;

/** `renew`: ARGV = channel, replica, token, durationMs. Returns `{now, soonest, lease or false, expired}`. */
export const RENEW = PRELUDE + `
local expired = sweep()
local l = false
if redis.call('ZSCORE', leases, ARGV[3]) then
  redis.call('ZADD', leases, 'XX', now + tonumber(ARGV[4]), ARGV[3])
  l = lease(ARGV[3])
end
return {now, soonest(), l, expired}
`;

/**
 * `read`: ARGV = channel, replica, what, arg. `what` is `id`, `token` or `all`.
 * Returns `{now, soonest, leases, expired}`, leases soonest expiry first.
 */
export const READ = PRELUDE + `
local expired = sweep()
local out = {}
if ARGV[3] == 'id' then
  local token = redis.call('HGET', ids, ARGV[4])
  out[1] = token and lease(token)
elseif ARGV[3] == 'token' then
  out[1] = lease(ARGV[4])
else
  for i, token in ipairs(redis.call('ZRANGE', leases, 0, -1)) do out[i] = lease(token) end
end
return {now, soonest(), out, expired}
`;

/**
 * `join`: ARGV = channel, replica, ticket, id, score (`""` for a new arrival
 * number). Puts the ticket in line, or back at its old place; returns its place.
 */
export const JOIN = PRELUDE + `
return join(ARGV[3], ARGV[4], ARGV[5])
`;

/**
 * `leave`: ARGV = channel, replica, then pairs of ticket and keepMs. Takes
 * the tickets out of line; those behind may ask. An id's ticket with a
 * keepMs keeps its place that long for its client to come back through any
 * replica; one another replica owns now is left alone.
 */
export const LEAVE = PRELUDE + `
local removed = 0
for i = 3, #ARGV - 1, 2 do
  local ticket, keep = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('ZSCORE', line, ticket) then
    if not byId(ticket) then
      remove(ticket)
      removed = removed + 1
    elseif redis.call('HGET', owners, ticket) == self then
      if keep > 0 then redis.call('ZADD', away, now + keep, ticket) else remove(ticket) end
      removed = removed + 1
    end
  end
end
if removed > 0 then redis.call('PUBLISH', channel, self) end
return removed
`;

/**
 * `abandon`: ARGV = channel, replica, tokens…. Drops the leases of acquires
 * whose answer never came back (Redis ran them after the caller gave up), so
 * no slot stays held by a token nobody knows. Returns how many were held.
 */
export const ABANDON = PRELUDE + `
local dropped = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', leases, ARGV[i]) then
    drop(ARGV[i])
    dropped = dropped + 1
  end
end
if dropped > 0 then redis.call('PUBLISH', channel, self) end
return dropped
`;

/**
 * `beat`: ARGV = channel, replica, ttlMs. Keeps the replica's tickets alive
 * for ttlMs, forgets replicas silent for a minute, drops run-out leases.
 * Returns `{now, soonest, expired}`.
 */
export const BEAT = PRELUDE + `
catchUp()
redis.call('ZADD', replicas, now + tonumber(ARGV[3]), self)
redis.call('HSET', config, 'beat', now)
redis.call('ZREMRANGEBYSCORE', replicas, '-inf', now - 60000)
local expired = sweep()
return {now, soonest(), expired}
`;

/**
 * `line`: ARGV = channel, replica. The live tickets in order, as
 * `{ticket, id}` pairs (id `""` when anonymous).
 */
export const LINE = PRELUDE + `
catchUp()
local out = {}
for _, m in ipairs(redis.call('ZRANGE', line, 0, -1)) do
  if not isAway(m) and alive(m) then out[#out + 1] = {m, redis.call('HGET', tickets, m) or ''} end
end
return out
`;

/**
 * `init`: ARGV = channel, replica, capacity. Stores the capacity if the
 * semaphore has none yet; returns the stored one.
 */
export const INIT = PRELUDE + `
redis.call('HSETNX', config, 'capacity', ARGV[3])
return tonumber(redis.call('HGET', config, 'capacity'))
`;

/** Every script by the name the store calls it. */
export const SCRIPTS = {
  acquire: ACQUIRE,
  release: RELEASE,
  renew: RENEW,
  read: READ,
  join: JOIN,
  leave: LEAVE,
  abandon: ABANDON,
  beat: BEAT,
  line: LINE,
  init: INIT,
} as const;
