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
 * | `claims`   | hash   | token → times handed out again (absent: never)         |
 * | `replicas` | zset   | replica → heartbeat deadline (server milliseconds)     |
 * | `seq`      | string | the last arrival number given out                      |
 * | `config`   | hash   | `capacity` → the number of slots, `epoch` → a random   |
 * |            |        | name written once with it, `version` → the count of    |
 * |            |        | changes of the leases, `beat` → the last heartbeat of  |
 * |            |        | any replica (server milliseconds)                      |
 * | `paused`   | set    | replicas that cannot grant now (a gate closed)         |
 * | `offers`   | hash   | ticket → `DURATION TOKEN`: the lease its client would  |
 * |            |        | take, for a release to hand it over at once            |
 * | `handed`   | hash   | ticket → `REPLICA TOKEN`: a slot a script handed to it |
 * |            |        | by itself, which that replica passes on                |
 *
 * and begins its arguments (`ARGV`) with the channel, the calling replica's
 * name, the semaphore's epoch as the caller knows it, the caller's capacity
 * and the count of changes (`version`) the caller has seen; the script's own
 * arguments (`args`, below) follow. Every script but `init` first checks
 * them (`CHECKED`) and answers an error reply `LOST <stored epoch or none>`
 * (`LOST rewound` when Redis holds fewer changes than the caller saw) or
 * `CAPACITY <stored capacity>`; it answers `{version, reply}`.
 *
 * A lease comes back as `{token, id or false, acquiredAt, expiresAt, claims}`, with
 * the server's `now` beside it. Ids are printable ASCII without spaces
 * (`lib/protocol.ts`), so a space separates them from the time in `info`.
 *
 * A client that gives its id has one ticket, `#ID`, whichever replica its
 * request reaches: the place belongs to the id, cluster-wide. The replica
 * that joins it last owns it (it holds the waiting request), and the ticket
 * holds others up only while that replica can grant (not `paused`). While
 * its client is away between two requests the ticket keeps its place for a
 * grace (`away`), holding up nobody; a request through any replica takes it
 * back. Anonymous tickets are named after their replica (`REPLICA/N`);
 * replica names never begin with `#`.
 *
 * A freed slot is handed over in the step that frees it (`settle`): the
 * first ticket in line that can take it, whose replica beat lately and which
 * left an offer (the duration its client asks, a token), gets a lease for
 * that whole duration at once, and its replica hears it on the channel
 * (`/` and JSON: `{to, ticket, lease, now}`) and answers its client without
 * another call: a handoff costs one script, not two. A replica that misses
 * the message learns it at its next beat or take; one that never passes the
 * slot on (it died that instant) leaves it held until the lease runs out,
 * which wastes a slot but never lets two clients in.
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
  "paused",
  "owners",
  "away",
  "claims",
  "offers",
  "handed",
] as const;

/**
 * The semaphore's keys expire this long after the last beat of any replica:
 * a `--name` no replica uses any more leaves nothing behind. A day outlasts
 * any outage worth waiting for; a replica that comes back later finds the
 * semaphore gone and recovers as after any loss.
 */
export const SEMAPHORE_TTL_MS = 24 * 3_600_000;

/** The error reply of a script that found the semaphore gone or made anew. */
export const LOST = "LOST";
/**
 * The epoch a script writes when Redis went back in time (it holds fewer
 * changes than a caller saw): every replica then finds its epoch changed.
 */
export const REWOUND = "rewound";
/** The error reply of a script called with another capacity than the stored one. */
export const CAPACITY = "CAPACITY";

/**
 * When no replica has beaten for this long, Redis (or the way to it) was gone
 * for all of them: none is counted dead for that time. Replicas beat every
 * second (`BEAT_INTERVAL_MS`) and count as dead after 3 (`TICKET_TTL_MS`), so
 * 2 s of silence means that nobody could beat, while a live replica's
 * heartbeat still has time left.
 */
export const SILENCE_MS = 2_000;

/**
 * A slot is handed over only to a ticket whose replica has this long left
 * of its heartbeat (`TICKET_TTL_MS`, 3 s, from its last beat): one that beat
 * within the last 1.5 s. A replica silent longer may be gone, and a slot
 * handed to it would stay held until its lease ran out; its tickets are
 * asked for instead, as any replica asks, and dropped if it stays silent.
 */
export const HANDOFF_MIN_LEFT_MS = 1_500;

/** Begins a message on the channel that hands a slot to a ticket; a replica name has no `/`. */
export const HANDOFF_PREFIX = "/";

const PRELUDE = `
local leases, info, ids, line, tickets, replicas, seq, config, paused, owners, away, claims =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12]
local offers, handed = KEYS[13], KEYS[14]
local channel, self, epoch, capacity, seen =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local args = {select(6, unpack(ARGV))}
local SILENCE_MS = ${SILENCE_MS}
local HANDOFF_MIN_LEFT_MS = ${HANDOFF_MIN_LEFT_MS}
local SEMAPHORE_TTL_MS = ${SEMAPHORE_TTL_MS}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Tells every replica that slots freed. A failure (a user without the channel right) must not
-- fail the script: its writes are made already, and every replica also asks again each beat.
local function publish()
  redis.pcall('PUBLISH', channel, self)
end

-- How many times a lease was handed out again since its grant: to its id asking again, or
-- renewed by its token. Whoever claimed it knows its token: a hand-back must not free it.
local function claimsOf(token)
  return tonumber(redis.call('HGET', claims, token)) or 0
end

local function lease(token)
  local expires = redis.call('ZSCORE', leases, token)
  if not expires then return false end
  local v = redis.call('HGET', info, token) or '0'
  local n = claimsOf(token)
  local sep = string.find(v, ' ', 1, true)
  if sep then
    return {token, string.sub(v, sep + 1), tonumber(string.sub(v, 1, sep - 1)), tonumber(expires), n}
  end
  return {token, false, tonumber(v), tonumber(expires), n}
end

-- Counts a change of the leases: a replica that saw a count Redis no longer has knows that Redis
-- lost changes it had answered (a failover to a replica that missed them).
local function changed()
  redis.call('HINCRBY', config, 'version', 1)
end

local function drop(token)
  local l = lease(token)
  if l then changed() end
  redis.call('ZREM', leases, token)
  redis.call('HDEL', info, token)
  redis.call('HDEL', claims, token)
  if l and l[2] and redis.call('HGET', ids, l[2]) == token then redis.call('HDEL', ids, l[2]) end
  return l
end

-- Defined below: hands freed slots over, and tells every replica of those still free.
local settle

-- Drops the leases that have run out; hands their slots over.
local function sweep()
  local gone = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  local expired = {}
  for i, token in ipairs(gone) do expired[i] = drop(token) end
  if #gone > 0 then settle(true) end
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

-- The replica that holds the ticket's client: named in an anonymous ticket, kept for an id's.
local function owner(ticket)
  if byId(ticket) then return redis.call('HGET', owners, ticket) end
  return string.match(ticket, '^(.*)/[^/]*$')
end

-- Takes a ticket out of line for good.
local function remove(ticket)
  redis.call('ZREM', line, ticket)
  redis.call('HDEL', tickets, ticket)
  redis.call('HDEL', offers, ticket)
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

-- Whether the ticket's replica can grant it now: a ticket that cannot be served holds nobody up.
local function eligible(ticket)
  local replica = owner(ticket)
  return replica and redis.call('SISMEMBER', paused, replica) == 0
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
-- that stopped beating on the way, and counts none of a replica that cannot grant now nor an
-- id's kept while its client is away. A replica serves its own waiters in the line's order, so
-- its first ticket is its place, whichever of its waiters asks. Returns the count and that
-- ticket.
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
        if eligible(m) then
          count = count + 1
          if count >= limit then break end
        end
      else
        gone[#gone + 1] = m
      end
    end
    for _, d in ipairs(gone) do remove(d) end
    start = start + #batch - #gone
  end
  return count, false
end

-- Puts a ticket in line, or back at its old place (score: a ticket dropped while its replica
-- could not beat). An id's ticket keeps the place it first took, whichever replica joins it:
-- that replica owns it now. With an offer (duration and token), a release can hand it a slot.
local function join(ticket, id, score, duration, token)
  local placed = redis.call('ZSCORE', line, ticket)
  if byId(ticket) then
    if placed and isAway(ticket) then placed = redis.call('ZSCORE', line, ticket) end
    redis.call('HSET', owners, ticket, self)
    redis.call('ZREM', away, ticket)
  end
  if token and token ~= '' then redis.call('HSET', offers, ticket, duration .. ' ' .. token) end
  if placed then return tonumber(placed) end
  local s = tonumber(score)
  if not s then s = redis.call('INCR', seq) end
  redis.call('ZADD', line, s, ticket)
  redis.call('HSET', tickets, ticket, id)
  return s
end

-- Takes a slot: a lease of duration for token, held by id ('' when anonymous).
local function grant(token, duration, id)
  changed()
  redis.call('ZADD', leases, now + duration, token)
  if id ~= '' then
    redis.call('HSET', info, token, now .. ' ' .. id)
    redis.call('HSET', ids, id, token)
  else
    redis.call('HSET', info, token, now)
  end
end

-- The token of the slot handed to a ticket that its replica has not passed on yet, if any: the
-- lease is still held and nobody claimed it since.
local function handedTo(ticket)
  local h = redis.call('HGET', handed, ticket)
  local token = h and string.match(h, ' (%S+)$')
  if token and redis.call('ZSCORE', leases, token) and claimsOf(token) == 0 then return token end
  return false
end

-- The slots this step handed to the caller's own tickets, as {ticket, lease} pairs: answered
-- with the reply, after what the reply says (a lease that ran out before the grant it allowed).
local handedHere = {}

-- Hands a free slot to the first ticket in line that can take it, in this step: a lease for
-- the duration of its offer, under its token and id, written before anyone hears of it. Skips,
-- as ahead() does, the kept places of clients away and the tickets of replicas that cannot
-- grant, and drops those of dead replicas. Hands nothing (its replica asks, as any does) when
-- that ticket left no offer or its replica did not beat lately. Returns whether it handed one.
local function handOff()
  if redis.call('ZCARD', leases) >= capacity then return false end
  local start = 0
  while true do
    local batch = redis.call('ZRANGE', line, start, start + 63)
    if #batch == 0 then return false end
    local gone, target = {}, false
    for _, m in ipairs(batch) do
      if isAway(m) then
        if not redis.call('ZSCORE', line, m) then gone[#gone + 1] = m end
      elseif not alive(m) then
        gone[#gone + 1] = m
      elseif eligible(m) then
        target = m
        break
      end
    end
    for _, d in ipairs(gone) do remove(d) end
    if target then
      local replica = owner(target)
      local offer = redis.call('HGET', offers, target)
      if not offer then return false end
      if tonumber(redis.call('ZSCORE', replicas, replica)) - now < HANDOFF_MIN_LEFT_MS then
        return false
      end
      local id = redis.call('HGET', tickets, target) or ''
      local heldBy = id ~= '' and redis.call('HGET', ids, id)
      -- An id that holds a slot already is answered with it by its replica.
      if heldBy and redis.call('ZSCORE', leases, heldBy) then return false end
      local duration, token = string.match(offer, '^(%d+) (%S+)$')
      grant(token, tonumber(duration), id)
      remove(target)
      redis.call('HSET', handed, target, replica .. ' ' .. token)
      if replica == self then
        handedHere[#handedHere + 1] = {target, lease(token)}
      else
        redis.pcall('PUBLISH', channel, '${HANDOFF_PREFIX}' .. cjson.encode({
          to = replica, ticket = target, lease = lease(token), now = now,
        }))
      end
      return true
    end
    start = start + #batch - #gone
  end
end

-- After slots freed: hands them to the tickets first in line, then tells every replica of any
-- still free (always, or only while tickets wait), so that their waiters ask.
settle = function(always)
  catchUp()
  while handOff() do end
  if redis.call('ZCARD', leases) < capacity and (always or redis.call('ZCARD', line) > 0) then
    publish()
  end
end
`;

/**
 * The prelude, then a check that the semaphore is the one the caller knows,
 * with the capacity the caller has; otherwise the script stops before it
 * reads or writes anything. A missing or different epoch means that Redis
 * lost what it held (a restart without its data, `FLUSHALL`, an eviction, a
 * failover that lost writes): the caller must learn it, and nothing may
 * paper over it by making a new semaphore. The stored capacity is the
 * authority: a replica with another one is refused.
 */
const CHECKED = PRELUDE + `
local stored = redis.call('HMGET', config, 'epoch', 'capacity', 'version')
if stored[1] ~= epoch then return redis.error_reply('${LOST} ' .. (stored[1] or 'none')) end
if (tonumber(stored[3]) or 0) < seen then
  -- Redis went back in time: every replica must learn it, not only this one.
  redis.call('HSET', config, 'epoch', '${REWOUND}')
  return redis.error_reply('${LOST} ${REWOUND}')
end
if tonumber(stored[2]) ~= capacity then
  return redis.error_reply('${CAPACITY} ' .. (stored[2] or 'none'))
end
`;

/**
 * A script's body after {@linkcode CHECKED}, its reply beside the count of
 * changes, which the caller keeps to pass back as `seen`, and the slots it
 * handed to the caller's own tickets: `{version, reply, {now, {ticket, lease}…}}`.
 */
function checked(body: string): string {
  return CHECKED + `local function run()
${body}
end
local reply = run()
return {tonumber(redis.call('HGET', config, 'version')) or 0, reply, {now, unpack(handedHere)}}
`;
}

/**
 * `acquire`: durationMs, id, ticket, token, place (the ticket's place in line
 * when it had one, `""` if not: a ticket dropped while its replica could not
 * beat gets its place back), offer (a token for the ticket's offer, `""` for
 * none).
 * Returns `{1, now, soonest, lease, how, expired}` for a grant (how: `0` a
 * new lease, `1` the id's lease asked for again, `2` the slot a release handed
 * to the ticket), or `{0, now, soonest, nextFreeInMs, waitingAhead, expired}`.
 * A ticket (`""` for none) is put in line if it is not there yet, with its
 * offer, and counts as waiting at its replica's first place; without one, any
 * live ticket waits ahead.
 */
export const ACQUIRE = checked(`
local duration, id, ticket, token, place, offer =
  tonumber(args[1]), args[2], args[3], args[4], args[5], args[6]
local expired = sweep()
local given = ticket ~= '' and handedTo(ticket)
if given and (id == '' or redis.call('HGET', ids, id) == given) then
  -- Handed to this ticket by a release, and nobody claimed it since: it is this request's, for
  -- the duration asked now (its offer may be older than this request).
  changed()
  redis.call('ZADD', leases, 'XX', now + duration, given)
  return {1, now, soonest(), lease(given), 2, expired}
end
if id ~= '' then
  local heldBy = redis.call('HGET', ids, id)
  if heldBy and redis.call('ZSCORE', leases, heldBy) then
    -- Asking again starts the lock afresh, for what is asked now.
    changed()
    redis.call('ZADD', leases, 'XX', now + duration, heldBy)
    redis.call('HINCRBY', claims, heldBy, 1)
    return {1, now, soonest(), lease(heldBy), 1, expired}
  end
end
if ticket ~= '' then join(ticket, id, place, duration, offer) end
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
grant(token, duration, id)
if ticket ~= '' then
  -- The replica's first place goes with the grant; its ticket there takes this one's place.
  -- An id's ticket keeps its own place: it is the id's, not the replica's.
  if first and first ~= ticket and not byId(first) then
    redis.call('ZADD', line, redis.call('ZSCORE', line, ticket), first)
  end
  remove(ticket)
  -- Slots are still free and others wait: hand them over, or let them ask.
  if free > 1 then settle(false) end
end
return {1, now, soonest(), lease(token), 0, expired}
`);

/**
 * `release`: token, claims (`""`, or for a hand-back the claims its grant
 * saw: a lease claimed since stays). Returns `{now, soonest, lease or false,
 * expired}`.
 */
export const RELEASE = checked(`
local expired = sweep()
local l = false
local expected = tonumber(args[2])
if redis.call('ZSCORE', leases, args[1]) and (not expected or claimsOf(args[1]) == expected) then
  l = drop(args[1])
  settle(true)
end
return {now, soonest(), l, expired}
`);

/** `renew`: token, durationMs. Returns `{now, soonest, lease or false, expired}`. */
export const RENEW = checked(`
local expired = sweep()
local l = false
if redis.call('ZSCORE', leases, args[1]) then
  changed()
  redis.call('ZADD', leases, 'XX', now + tonumber(args[2]), args[1])
  redis.call('HINCRBY', claims, args[1], 1)
  l = lease(args[1])
end
return {now, soonest(), l, expired}
`);

/**
 * `read`: what, arg. `what` is `id`, `token` or `all`.
 * Returns `{now, soonest, leases, expired}`, leases soonest expiry first.
 */
export const READ = checked(`
local expired = sweep()
local out = {}
if args[1] == 'id' then
  local token = redis.call('HGET', ids, args[2])
  out[1] = token and lease(token)
elseif args[1] == 'token' then
  out[1] = lease(args[2])
else
  for i, token in ipairs(redis.call('ZRANGE', leases, 0, -1)) do out[i] = lease(token) end
end
return {now, soonest(), out, expired}
`);

/**
 * `join`: ticket, id, score (`""` for a new arrival number), durationMs and
 * token of its offer (`""` for none). Puts the ticket in line, or back at its
 * old place; returns its place, or 0 for a ticket a release handed a slot
 * already (its replica passes it on; the ticket must not stand in line again).
 */
export const JOIN = checked(`
if handedTo(args[1]) then return 0 end
return join(args[1], args[2], args[3], args[4], args[5])
`);

/**
 * `leave`: pairs of ticket and keepMs. Takes the tickets out of line; those
 * behind may ask. An id's ticket with a keepMs keeps its place that long for
 * its client to come back through any replica; one another replica owns now
 * is left alone.
 */
export const LEAVE = checked(`
local removed = 0
for i = 1, #args - 1, 2 do
  local ticket, keep = args[i], tonumber(args[i + 1])
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
if removed > 0 then settle(true) end
return removed
`);

/**
 * `abandon`: tokens…. Drops the leases of acquires
 * whose answer never came back (Redis ran them after the caller gave up), so
 * no slot stays held by a token nobody knows; but not one that its id asked
 * for again since, through any replica: that client knows it. Returns how
 * many were dropped.
 */
export const ABANDON = checked(`
local dropped = 0
for i = 1, #args do
  if redis.call('ZSCORE', leases, args[i]) and claimsOf(args[i]) == 0 then
    drop(args[i])
    dropped = dropped + 1
  end
end
if dropped > 0 then settle(true) end
return dropped
`);

/**
 * `beat`: ttlMs, eligible (`1` when the replica can grant now, `0` when not).
 * Keeps the replica's tickets alive
 * for ttlMs, forgets replicas silent for a minute, drops run-out leases, and
 * keeps every key of the semaphore for {@linkcode SEMAPHORE_TTL_MS} more.
 * Hands free slots to the tickets first in line, as a release does. Returns
 * `{now, soonest, expired, free, mine}`: free, the slots free now, tells a
 * replica with waiters to ask for them even if no message came; mine, the
 * slots handed to this replica's tickets that nobody claimed yet, as
 * `{ticket, lease}` pairs, for the messages it may have missed. Forgets the
 * handed slots that were claimed or ended.
 */
export const BEAT = checked(`
catchUp()
redis.call('ZADD', replicas, now + tonumber(args[1]), self)
if args[2] == '1' then redis.call('SREM', paused, self) else redis.call('SADD', paused, self) end
redis.call('HSET', config, 'beat', now)
for _, r in ipairs(redis.call('ZRANGEBYSCORE', replicas, '-inf', now - 60000)) do
  redis.call('SREM', paused, r)
end
redis.call('ZREMRANGEBYSCORE', replicas, '-inf', now - 60000)
local expired = sweep()
while handOff() do end
local mine = {}
local h = redis.call('HGETALL', handed)
for i = 1, #h, 2 do
  local replica, token = string.match(h[i + 1], '^(.*) (%S+)$')
  if not handedTo(h[i]) then
    redis.call('HDEL', handed, h[i])
  elseif replica == self then
    mine[#mine + 1] = {h[i], lease(token)}
  end
end
-- The semaphore's keys outlive its last replica by ttl: a retired --name leaves nothing behind.
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, SEMAPHORE_TTL_MS) end
return {now, soonest(), expired, capacity - redis.call('ZCARD', leases), mine}
`);

/**
 * `line`: no arguments. The tickets that hold others up, in order (those of
 * live replicas that can grant now, and no id's kept while its client is
 * away), as `{ticket, id}` pairs (id `""` when
 * anonymous).
 */
export const LINE = checked(`
catchUp()
local out = {}
for _, m in ipairs(redis.call('ZRANGE', line, 0, -1)) do
  if not isAway(m) and alive(m) and eligible(m) then
    out[#out + 1] = {m, redis.call('HGET', tickets, m) or ''}
  end
end
return out
`);

/**
 * `init`: no arguments. Makes the semaphore, with the caller's epoch and
 * capacity, if Redis holds none (the first replica ever, or the first after a
 * loss once the recovery is over; a rewound epoch counts as none); returns
 * the stored `{capacity, epoch, version}`,
 * which the caller adopts (or, for another capacity, refuses). The one
 * script that runs without the check of {@linkcode CHECKED}.
 */
export const INIT = PRELUDE + `
redis.call('HSETNX', config, 'capacity', ARGV[4])
local current = redis.call('HGET', config, 'epoch')
if not current or current == '${REWOUND}' then redis.call('HSET', config, 'epoch', epoch) end
local stored = redis.call('HMGET', config, 'capacity', 'epoch', 'version')
return {tonumber(stored[1]), stored[2], tonumber(stored[3]) or 0}
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
