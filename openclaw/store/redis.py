"""
The Redis store, for deployments that keep state outside the host.

Every step that touches several keys is one Lua script, so Redis applies it
atomically: recording an inbound event (idempotency, arrival order, history,
session), completing it (done + history + outbox) and enqueueing.  All keys
start with ``prefix``; scripts derive the per-id keys from it, so the store
wants one Redis (or a primary with replicas), not Redis Cluster.  Durability
is whatever the server's AOF/RDB settings give (see docs/storage.md).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import orjson
import txredisapi
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from zope.interface import implementer

from openclaw import metrics
from openclaw.eliotutil import begin, log
from openclaw.events import Event, OutboxItem
from openclaw.interfaces import IStore
from openclaw.shards import GROUP, INBOUND_FENCED, shard_of
from openclaw.store.sqlite import StoreError

# Lua helpers shared by the scripts that enqueue.  Numbers travel as strings
# both ways: Redis would truncate a Lua float to an integer in a reply.
_ENQUEUE = """
local function enqueue(p, id, dedupe, item, next_attempt)
  local existing = redis.call('HGET', p..'out:dedupe', dedupe)
  if existing then return existing, 1 end
  redis.call('HSET', p..'out:dedupe', dedupe, id)
  local seq = redis.call('INCR', p..'out:seq')
  redis.call('HSET', p..'out:'..id, 'item', item, 'seq', seq, 'status', 'pending',
             'attempts', '0', 'next_attempt', next_attempt)
  redis.call('ZADD', p..'out:due', next_attempt, id)
  redis.call('HINCRBY', p..'out:counts', 'pending', 1)
  return id, 0
end
local function append_history(p, session, entry, limit)
  local key = p..'hist:'..session
  redis.call('RPUSH', key, entry)
  redis.call('LTRIM', key, -limit, -1)
end
"""

# ARGV: prefix, id, dedupe field or '', session, event json, history entry
# or '', history limit, channel, peer or '', timestamp, shard.  The event
# also goes onto its shard's stream, where the instance holding the shard
# reads it (openclaw/shards.py).
_RECORD = _ENQUEUE + """
local p, id, dedupe, session = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', p..'in:'..id) == 1 then return {id, '1'} end
if dedupe ~= '' then
  local first = redis.call('HGET', p..'in:dedupe', dedupe)
  if first then return {first, '1'} end
  redis.call('HSET', p..'in:dedupe', dedupe, id)
end
local seq = redis.call('INCR', p..'in:seq')
local xid = redis.call('XADD', p..'inbound:'..ARGV[11], '*', 'id', id, 'event', ARGV[5])
redis.call('HSET', p..'in:'..id, 'event', ARGV[5], 'state', 'received', 'session', session, 'dedupe', dedupe,
           'shard', ARGV[11], 'xid', xid)
redis.call('ZADD', p..'in:pending', seq, id)
if ARGV[6] ~= '' then append_history(p, session, ARGV[6], tonumber(ARGV[7])) end
local s, ts = p..'sess:'..session, ARGV[10]
if redis.call('SADD', p..'sessions', session) == 1 then
  redis.call('HSET', s, 'first_seen', ts, 'last_active', ts)
elseif tonumber(redis.call('HGET', s, 'last_active')) < tonumber(ts) then
  redis.call('HSET', s, 'last_active', ts)
end
redis.call('HSET', s, 'channel', ARGV[8])
if ARGV[9] ~= '' then redis.call('HSET', s, 'peer', ARGV[9]) end
redis.call('SADD', p..'in:sources', ARGV[8])
redis.call('ZADD', p..'in:at:'..ARGV[8], ts, id)
return {id, '0'}
"""

# Received events with no stream entry (recorded before streams): ids and sessions.
_UNSTREAMED = """
local p, found = ARGV[1], {}
for _, id in ipairs(redis.call('ZRANGE', p..'in:pending', 0, -1)) do
  local r = redis.call('HMGET', p..'in:'..id, 'xid', 'session', 'event')
  if not r[1] and r[2] then table.insert(found, {id, r[2], r[3]}) end
end
return found
"""

# ARGV: prefix, then per event: id, shard, event json.  In pending order.
_STREAM = """
local p = ARGV[1]
for i = 2, #ARGV, 3 do
  local key = p..'in:'..ARGV[i]
  if redis.call('HGET', key, 'state') == 'received' and not redis.call('HGET', key, 'xid') then
    local xid = redis.call('XADD', p..'inbound:'..ARGV[i + 1], '*', 'id', ARGV[i], 'event', ARGV[i + 2])
    redis.call('HSET', key, 'shard', ARGV[i + 1], 'xid', xid)
  end
end
return 1
"""

_PENDING = """
local p = ARGV[1]
local events = {}
for _, id in ipairs(redis.call('ZRANGE', p..'in:pending', 0, -1)) do
  table.insert(events, redis.call('HGET', p..'in:'..id, 'event'))
end
return events
"""

# Leaving ``received``: the event's stream entry is acknowledged and deleted
# in the same step.  With a fencing token (the event was read from its
# shard's stream), a token older than the shard's latest is refused: the
# shard passed to another instance, which answers the event instead.
_SETTLE = """
local function settle(p, event_id, token)
  local key = p..'in:'..event_id
  local r = redis.call('HMGET', key, 'state', 'session', 'shard', 'xid')
  if not r[1] then return redis.error_reply('ERR unknown inbound event') end
  if r[1] ~= 'received' then return nil end
  if token ~= '' and r[3] and tonumber(token) < tonumber(redis.call('GET', p..'fence:shard:'..r[3]) or '0') then
    return redis.error_reply('ERR fenced: shard '..r[3]..' passed to another instance')
  end
  if r[4] then
    redis.call('XACK', p..'inbound:'..r[3], 'openclaw', r[4])
    redis.call('XDEL', p..'inbound:'..r[3], r[4])
  end
  redis.call('ZREM', p..'in:pending', event_id)
  redis.call('INCR', p..'in:answered')
  return r[2]
end
"""

# Events received and not yet answered (every instance's), and answered so far.
_BACKLOG = """
return {redis.call('ZCARD', ARGV[1]..'in:pending'), tonumber(redis.call('GET', ARGV[1]..'in:answered') or '0')}
"""

# ARGV: prefix, event id, history limit, fencing token or '', then per
# reply: id, dedupe key, item json, next attempt, history entry or ''.
_COMPLETE = _ENQUEUE + _SETTLE + """
local p, event_id = ARGV[1], ARGV[2]
local session = settle(p, event_id, ARGV[4])
if type(session) == 'table' then return session end
if not session then return {} end
redis.call('HSET', p..'in:'..event_id, 'state', 'done')
local ids = {}
for i = 5, #ARGV, 5 do
  local id, duplicate = enqueue(p, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  if duplicate == 0 then table.insert(ids, id) end
  if ARGV[i + 4] ~= '' then append_history(p, session, ARGV[i + 4], tonumber(ARGV[3])) end
end
return ids
"""

# ARGV: prefix, event id, error, fencing token or ''.
_FAIL = _SETTLE + """
local session = settle(ARGV[1], ARGV[2], ARGV[4])
if type(session) == 'table' then return session end
if not session then return 0 end
redis.call('HSET', ARGV[1]..'in:'..ARGV[2], 'state', 'failed', 'error', ARGV[3])
return 1
"""

# ARGV: prefix, shard, consumer, min idle ms.  Every entry pending in the
# shard's group for at least min idle ms, whoever read it, passes to
# ``consumer`` (the shard's holder), oldest first; entries whose event is no
# longer received are acknowledged away.
_CLAIM = """
local p, shard, consumer = ARGV[1], ARGV[2], ARGV[3]
local stream, start, events = p..'inbound:'..shard, '0-0', {}
repeat
  local r = redis.call('XAUTOCLAIM', stream, 'openclaw', consumer, ARGV[4], start, 'COUNT', 100)
  start = r[1]
  for _, entry in ipairs(r[2]) do
    local fields = entry[2]
    if fields and redis.call('HGET', p..'in:'..fields[2], 'state') == 'received' then
      table.insert(events, fields[4])
    else
      redis.call('XACK', stream, 'openclaw', entry[1])
      redis.call('XDEL', stream, entry[1])
    end
  end
until start == '0-0'
return events
"""

# ARGV: prefix, id, dedupe key, item json, next attempt, session, history
# entry or '', history limit.
_ENQUEUE_ONE = _ENQUEUE + """
local id, duplicate = enqueue(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if duplicate == 0 and ARGV[7] ~= '' then append_history(ARGV[1], ARGV[6], ARGV[7], tonumber(ARGV[8])) end
return {id, tostring(duplicate)}
"""

# Due rows in created order: the due set is ordered by next attempt, so sort.
# ARGV: prefix, now, limit, claimant or '', claim ms, then the channels to
# take (none: every channel).  With a claimant, the rows returned are claimed
# for claim ms (by Redis's clock): other claimants skip them meanwhile, so two
# instances never send one row at once; the claimant itself takes them again.
_DUE = """
local p, claimant = ARGV[1], ARGV[4]
local wanted = nil
if #ARGV > 5 then
  wanted = {}
  for i = 6, #ARGV do wanted[ARGV[i]] = true end
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rows = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p..'out:due', '-inf', ARGV[2])) do
  local r = redis.call('HMGET', p..'out:'..id, 'seq', 'item', 'attempts', 'next_attempt', 'last_error', 'claim', 'claim_until')
  local free = claimant == '' or not r[6] or r[6] == claimant or tonumber(r[7]) <= now_ms
  if free and (wanted == nil or wanted[cjson.decode(r[2]).channel]) then
    r[8] = id
    table.insert(rows, r)
  end
end
table.sort(rows, function(a, b) return tonumber(a[1]) < tonumber(b[1]) end)
local due = {}
for i = 1, math.min(#rows, tonumber(ARGV[3])) do
  local r = rows[i]
  if claimant ~= '' then
    redis.call('HSET', p..'out:'..r[8], 'claim', claimant, 'claim_until', now_ms + tonumber(ARGV[5]))
  end
  table.insert(due, {r[2], r[3], r[4], r[5] or ''})
end
return due
"""

# ARGV: prefix, id, outcome (sent|retry|failed), next attempt, error.
_MARK = """
local p, id, outcome = ARGV[1], ARGV[2], ARGV[3]
local key = p..'out:'..id
if redis.call('HGET', key, 'status') ~= 'pending' then return 0 end
if outcome == 'retry' then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'next_attempt', ARGV[4], 'last_error', ARGV[5])
  redis.call('HDEL', key, 'claim', 'claim_until')
  redis.call('ZADD', p..'out:due', ARGV[4], id)
  return 1
end
if outcome == 'failed' then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'last_error', ARGV[5])
end
redis.call('HSET', key, 'status', outcome)
redis.call('ZREM', p..'out:due', id)
local item = cjson.decode(redis.call('HGET', key, 'item'))
redis.call('SADD', p..'out:channels', item.channel)
redis.call('ZADD', p..'out:'..outcome..':'..item.channel, item.created_at, id)
redis.call('HINCRBY', p..'out:counts', 'pending', -1)
redis.call('HINCRBY', p..'out:counts', outcome, 1)
return 1
"""

# Per channel: inbound events by timestamp (in:at:<source>), outbox rows
# sent or failed by creation time (out:sent:<channel>, out:failed:<channel>).
_MESSAGE_COUNTS = """
local p, since, before = ARGV[1], ARGV[2], '('..ARGV[3]
local rows = {}
for _, source in ipairs(redis.call('SMEMBERS', p..'in:sources')) do
  table.insert(rows, {source, 'in', redis.call('ZCOUNT', p..'in:at:'..source, since, before)})
end
for _, channel in ipairs(redis.call('SMEMBERS', p..'out:channels')) do
  table.insert(rows, {channel, 'out', redis.call('ZCOUNT', p..'out:sent:'..channel, since, before)})
  table.insert(rows, {channel, 'failed', redis.call('ZCOUNT', p..'out:failed:'..channel, since, before)})
end
return rows
"""

_SESSIONS = """
local p = ARGV[1]
local rows = {}
for _, id in ipairs(redis.call('SMEMBERS', p..'sessions')) do
  local r = redis.call('HMGET', p..'sess:'..id, 'channel', 'peer', 'first_seen', 'last_active')
  table.insert(rows, {id, r[1], r[2] or '', r[3], r[4]})
end
return rows
"""

# Members are "<zero-padded seq>:<payload>" so equal timestamps keep their
# append order and equal payloads stay distinct.
_JOURNAL = """
redis.call('SADD', ARGV[1]..'journal:kinds', ARGV[2])
local seq = redis.call('INCR', ARGV[1]..'journal:seq')
redis.call('ZADD', ARGV[1]..'journal:'..ARGV[2], ARGV[3], string.format('%015d', seq)..':'..ARGV[4])
return 1
"""


# A typed export of every key under the prefix (all values are text here),
# and its inverse, which first deletes what is under the prefix.  Leases and
# instance keys live only while their holder renews them: not exported.
# Streams keep their entries; consumer groups are made again by the next
# shard holder, which then reads every entry left (docs/storage.md).
_EXPORT = """
local p, out, cursor = ARGV[1], {}, '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', p..'*', 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    local t, value = redis.call('TYPE', key).ok, nil
    local name = string.sub(key, #p + 1)
    if string.sub(name, 1, 6) == 'lease:' or string.sub(name, 1, 9) == 'instance:' then t = 'skip' end
    if t == 'skip' then
    elseif t == 'string' then value = redis.call('GET', key)
    elseif t == 'stream' then
      value = redis.call('XRANGE', key, '-', '+')
      if #value == 0 then t = 'skip' end
    elseif t == 'hash' then value = redis.call('HGETALL', key)
    elseif t == 'list' then value = redis.call('LRANGE', key, 0, -1)
    elseif t == 'set' then value = redis.call('SMEMBERS', key)
    elseif t == 'zset' then value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    else return redis.error_reply('ERR cannot export '..key..' of type '..t) end
    if t ~= 'skip' then table.insert(out, {name, t, value}) end
  end
until cursor == '0'
return cjson.encode(out)
"""

_IMPORT = """
local p, cursor = ARGV[1], '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', p..'*', 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do redis.call('DEL', key) end
until cursor == '0'
local n = 0
for _, entry in ipairs(cjson.decode(ARGV[2])) do
  local key, t, v = p..entry[1], entry[2], entry[3]
  if t == 'string' then redis.call('SET', key, v)
  elseif t == 'stream' then
    for _, e in ipairs(v) do redis.call('XADD', key, e[1], unpack(e[2])) end
  elseif #v > 0 then
    for i = 1, #v, 1000 do
      local chunk = {unpack(v, i, math.min(i + 999, #v))}
      if t == 'hash' then redis.call('HSET', key, unpack(chunk))
      elseif t == 'list' then redis.call('RPUSH', key, unpack(chunk))
      elseif t == 'set' then redis.call('SADD', key, unpack(chunk))
      elseif t == 'zset' then
        for j = 1, #chunk, 2 do redis.call('ZADD', key, chunk[j + 1], chunk[j]) end
      end
    end
  end
  n = n + 1
end
return n
"""

# ARGV: prefix, before, limit.  Sent outbox rows and finished inbound events
# (with their dedupe entries) and journal records older than ``before``; each
# time index is read at most ``limit`` entries at a time, so a pass costs what
# it deletes.  (An inbound event still received is read and kept: pending
# work, a handful.)
_PRUNE = """
local p, before, limit = ARGV[1], '('..ARGV[2], tonumber(ARGV[3])
local outbox, inbound, journal = 0, 0, 0
for _, channel in ipairs(redis.call('SMEMBERS', p..'out:channels')) do
  local zkey = p..'out:sent:'..channel
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', zkey, '-inf', before, 'LIMIT', 0, limit - outbox)) do
    local item = redis.call('HGET', p..'out:'..id, 'item')
    if item then redis.call('HDEL', p..'out:dedupe', cjson.decode(item).dedupe_key) end
    redis.call('DEL', p..'out:'..id)
    redis.call('ZREM', zkey, id)
    redis.call('HINCRBY', p..'out:counts', 'sent', -1)
    outbox = outbox + 1
  end
end
for _, source in ipairs(redis.call('SMEMBERS', p..'in:sources')) do
  local zkey = p..'in:at:'..source
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', zkey, '-inf', before, 'LIMIT', 0, limit - inbound)) do
    local r = redis.call('HMGET', p..'in:'..id, 'state', 'dedupe')
    if r[1] ~= 'received' then
      if r[2] and r[2] ~= '' then redis.call('HDEL', p..'in:dedupe', r[2]) end
      redis.call('DEL', p..'in:'..id)
      redis.call('ZREM', zkey, id)
      inbound = inbound + 1
    end
  end
end
for _, kind in ipairs(redis.call('SMEMBERS', p..'journal:kinds')) do
  local zkey = p..'journal:'..kind
  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', before, 'LIMIT', 0, limit - journal)
  if #old > 0 then journal = journal + redis.call('ZREM', zkey, unpack(old)) end
end
return {outbox, inbound, journal}
"""


def _fenced(error: Exception, event_id: str, fences: dict[str, str]) -> bool:
    """Whether ``error`` is the refusal of a stale shard holder's write (the new holder answers)."""
    if "fenced" not in str(error):
        return False
    metrics.inbound_fenced.inc()
    log(INBOUND_FENCED, level="warn", event_id=event_id, token=fences.get(event_id, ""))
    return True


def _number(value: float) -> str:
    """A float as text Redis and Lua read back exactly."""
    return repr(float(value))


def parse_url(url: str) -> tuple[str, int, int, str | None, str | None]:
    """``redis://[user:password@]host[:port][/db]`` -> host, port, db, user, password."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise StoreError(f"store: {url!r} is not a redis:// URL")
    try:
        port = parts.port or 6379
        path = parts.path.strip("/")
        db = int(path) if path else 0
    except ValueError:
        raise StoreError(f"store: cannot read port or database number in {redact(url)}") from None
    return parts.hostname or "localhost", port, db, parts.username or None, parts.password or None


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


@implementer(IStore)
class RedisStore(Service):
    """
    ``IStore`` on Redis.  ``startService`` connects in the background;
    ``ready`` fires once the server answered, or fails with a ``StoreError``
    naming the URL when it did not within ``connect_timeout`` seconds.
    Calls made before then wait for the connection.
    """

    def __init__(
        self, reactor: Any, url: str, prefix: str = "openclaw:", history: int = 200,
        connect_timeout: float = 10.0,
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one message per session")
        self._reactor = reactor
        self.url = url
        self.prefix = prefix
        self.history_limit = history
        self.connect_timeout = connect_timeout
        self.ready: Deferred | None = None
        self._redis: Any = None
        self._reader: Any = None
        #: Set by a clustered daemon (its instance id): outbox rows it takes
        #: are claimed for ``claim_for`` seconds (see ``due_outbox``).
        self.claim_as = ""
        self.claim_for = 30.0
        #: event id -> the fencing token of the shard lease it was read
        #: under (set by the shard consumer, dropped on completion).
        self.fences: dict[str, str] = {}

    def startService(self) -> Deferred:
        host, port, db, user, password = parse_url(self.url)
        Service.startService(self)
        self._redis = txredisapi.lazyConnection(
            host, port, db, reconnect=True, password=password, username=user,
            convertNumbers=False, connectTimeout=self.connect_timeout,
        )
        self.ready = self._connect()
        return self.ready

    @inlineCallbacks
    def _connect(self) -> Any:
        action = begin("openclaw:store:connect", url=redact(self.url), prefix=self.prefix)
        with action.context():
            answered: Deferred = Deferred()
            timer = self._reactor.callLater(
                self.connect_timeout, lambda: answered.called or answered.errback(
                    TimeoutError(f"no answer within {self.connect_timeout:g}s")))
            ping = self._redis.ping()
            ping.addBoth(lambda result: None if answered.called else answered.callback(result))
            try:
                yield answered
            except Exception as e:
                log("openclaw:store:connect-failed", level="error", url=redact(self.url), error=str(e))
                action.finish(e)
                yield self._redis.disconnect()
                raise StoreError(f"store: cannot connect to {redact(self.url)}: {e}") from None
            finally:
                if timer.active():
                    timer.cancel()
        action.finish()

    @inlineCallbacks
    def stopService(self) -> Any:
        """Close every connection; waits until the sockets are gone."""
        Service.stopService(self)
        with begin("openclaw:store:close", url=redact(self.url)).context():
            for name in ("_reader", "_redis"):
                connection = getattr(self, name)
                if connection is not None:
                    setattr(self, name, None)
                    yield connection.disconnect()

    @property
    def redis(self) -> Any:
        """The shared connection (for the cluster's lease scripts)."""
        if self._redis is None:
            raise StoreError("store: used while closed")
        return self._redis

    def _eval(self, script: str, *args: Any) -> Deferred:
        if self._redis is None:
            raise StoreError("store: used while closed")
        return self._redis.eval(script, [], [self.prefix, *args])

    # Key/value state

    @inlineCallbacks
    def get_state(self, key: str) -> Any:
        value = yield self._redis.hget(self.prefix + "state", key)
        return None if value is None else json.loads(value)

    def set_state(self, key: str, value: Any) -> Deferred:
        text = json.dumps(value)
        return self._redis.hset(self.prefix + "state", key, text).addCallback(lambda _: None)

    def delete_state(self, key: str) -> Deferred:
        return self._redis.hdel(self.prefix + "state", key).addCallback(lambda _: None)

    @inlineCallbacks
    def state_keys(self, prefix: str) -> Any:
        keys = yield self._redis.hkeys(self.prefix + "state")
        return sorted(k for k in keys if k.startswith(prefix))

    # Inbound events

    @inlineCallbacks
    def record_inbound(self, event: Event) -> Any:
        platform_id = event.platform_message_id
        dedupe = "" if platform_id is None else f"{len(event.source)}:{event.source}:{platform_id}"
        sender = event.payload.get("sender_id")
        entry = self._history_entry("user", event.text, event.id, event.timestamp)
        event_id, duplicate = yield self._eval(
            _RECORD, event.id, dedupe, event.session_id, event.to_json().decode(), entry,
            self.history_limit, event.source, "" if sender is None else str(sender), _number(event.timestamp),
            shard_of(event.session_id),
        )
        return event_id, duplicate == "1"

    @inlineCallbacks
    def pending_inbound(self) -> Any:
        events = yield self._eval(_PENDING)
        return [Event.from_json(e) for e in events]

    @inlineCallbacks
    def complete_inbound(self, event_id: str, replies: list[OutboxItem]) -> Any:
        now = self._reactor.seconds()
        args: list[Any] = [event_id, self.history_limit, self.fences.get(event_id, "")]
        for item in replies:
            args += [item.id, item.dedupe_key, self._item_json(item, now),
                     _number(item.next_attempt or now),
                     self._history_entry("assistant", item.text, event_id, now)]
        try:
            ids = yield self._eval(_COMPLETE, *args)
        except txredisapi.ResponseError as e:
            if "unknown inbound event" in str(e):
                raise KeyError(f"unknown inbound event {event_id}") from None
            if not _fenced(e, event_id, self.fences):
                raise
            ids = []
        self.fences.pop(event_id, None)
        return list(ids)

    @inlineCallbacks
    def fail_inbound(self, event_id: str, error: str) -> Any:
        try:
            yield self._eval(_FAIL, event_id, error, self.fences.get(event_id, ""))
        except txredisapi.ResponseError as e:
            if not _fenced(e, event_id, self.fences):
                raise
        self.fences.pop(event_id, None)

    # Inbound streams (read by openclaw/shards.py, not part of IStore)

    def stream_key(self, shard: int) -> str:
        return f"{self.prefix}inbound:{shard}"

    @inlineCallbacks
    def claim_shard(self, shard: int, consumer: str, min_idle: float = 0.0) -> Any:
        """
        Make the shard's consumer group if it is new, then move every entry
        pending in it (for ``min_idle`` seconds at least) to ``consumer``.
        Call only while holding the shard's lease.  :return: the events
        still received, oldest first.
        """
        try:
            yield self._redis.execute_command("XGROUP", "CREATE", self.stream_key(shard), GROUP, "0", "MKSTREAM")
        except txredisapi.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        events = yield self._eval(_CLAIM, str(shard), consumer, str(round(min_idle * 1000)))
        return [Event.from_json(e) for e in events]

    @inlineCallbacks
    def stream_unstreamed(self) -> Any:
        """Put events recorded before streams (still received, no entry) on their shards' streams."""
        found = yield self._eval(_UNSTREAMED)
        args: list[Any] = []
        for event_id, session, event in found:
            args += [event_id, shard_of(session), event]
        if args:
            yield self._eval(_STREAM, *args)
        return len(found)

    @inlineCallbacks
    def read_shards(self, consumer: str, shards: list[int], count: int, block: float) -> Any:
        """
        New entries of ``shards``' streams for ``consumer``, waiting up to
        ``block`` seconds for one, on a connection of its own (a blocked
        read would hold up every other command on the shared one).

        :return: ``[(shard, event), ...]`` in stream order per shard.
        """
        if self._reader is None:
            host, port, db, user, password = parse_url(self.url)
            self._reader = txredisapi.lazyConnection(
                host, port, db, reconnect=True, password=password, username=user,
                convertNumbers=False, connectTimeout=self.connect_timeout)
        keys = [self.stream_key(shard) for shard in shards]
        reply = yield self._reader.execute_command(
            "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", str(count), "BLOCK", str(max(1, int(block * 1000))),
            "STREAMS", *keys, *([">"] * len(keys)))
        found = []
        for key, entries in reply or []:
            shard = int(key.rsplit(":", 1)[1])
            found += [(shard, Event.from_json(fields[3])) for _, fields in entries if fields]
        return found

    def inbound_backlog(self) -> Deferred:
        """``(received and not yet answered, answered so far)`` over every instance (``openclaw.inbound_backlog``)."""
        return self._eval(_BACKLOG).addCallback(lambda r: (int(r[0]), int(r[1])))

    def inbound_state(self, event_id: str) -> Deferred:
        return self._redis.hget(f"{self.prefix}in:{event_id}", "state")

    # Outbox

    @inlineCallbacks
    def enqueue_outbox(self, item: OutboxItem, remember: bool = False) -> Any:
        now = self._reactor.seconds()
        entry = self._history_entry("assistant", item.text, item.id, now) if remember else ""
        outbox_id, duplicate = yield self._eval(
            _ENQUEUE_ONE, item.id, item.dedupe_key, self._item_json(item, now), _number(item.next_attempt or now),
            item.session_id, entry, self.history_limit)
        return outbox_id, duplicate == "1"

    @inlineCallbacks
    def due_outbox(self, now: float, limit: int, channels: list[str] | None = None) -> Any:
        if channels is not None and not channels:
            return []
        rows = yield self._eval(_DUE, _number(now), max(limit, 0), self.claim_as,
                                str(round(self.claim_for * 1000)), *(channels or []))
        items = []
        for item, attempts, next_attempt, last_error in rows:
            raw = orjson.loads(item)
            items.append(OutboxItem(
                attempts=int(attempts), next_attempt=float(next_attempt), status="pending",
                last_error=last_error or None, **raw))
        return items

    def mark_sent(self, outbox_id: str) -> Deferred:
        return self._eval(_MARK, outbox_id, "sent", "0", "").addCallback(lambda _: None)

    def mark_retry(self, outbox_id: str, next_attempt: float, error: str) -> Deferred:
        return self._eval(_MARK, outbox_id, "retry", _number(next_attempt), error).addCallback(lambda _: None)

    def mark_failed(self, outbox_id: str, error: str) -> Deferred:
        """Counts the attempt that failed for good, like ``mark_retry``."""
        return self._eval(_MARK, outbox_id, "failed", "0", error).addCallback(lambda _: None)

    @inlineCallbacks
    def outbox_counts(self) -> Any:
        raw = yield self._redis.hgetall(self.prefix + "out:counts")
        counts = {"pending": 0, "sent": 0, "failed": 0}
        counts.update({k: int(v) for k, v in raw.items()})
        return counts

    @inlineCallbacks
    def message_counts(self, since: float, until: float) -> Any:
        rows = yield self._eval(_MESSAGE_COUNTS, _number(since), _number(until))
        counts: dict[str, dict[str, int]] = {}
        for channel, field, n in rows:
            if int(n):
                counts.setdefault(channel, {"in": 0, "out": 0, "failed": 0})[field] = int(n)
        return counts

    @inlineCallbacks
    def prune(self, before: float, limit: int) -> Any:
        outbox, inbound, journal = yield self._eval(_PRUNE, _number(before), limit)
        return {"outbox": int(outbox), "inbound": int(inbound), "journal": int(journal)}

    # Sessions and history

    @inlineCallbacks
    def history(self, session_id: str, limit: int) -> Any:
        if limit <= 0:
            return []
        entries = yield self._redis.lrange(f"{self.prefix}hist:{session_id}", -limit, -1)
        return [orjson.loads(e) for e in entries]

    @inlineCallbacks
    def sessions(self) -> Any:
        rows = yield self._eval(_SESSIONS)
        return sorted(
            ({"session_id": s, "channel": c, "peer": peer or None, "first_seen": float(first),
              "last_active": float(last)} for s, c, peer, first, last in rows),
            key=lambda s: s["session_id"],
        )

    # Journal

    def append_journal(self, kind: str, timestamp: float, payload: Any) -> Deferred:
        return self._eval(
            _JOURNAL, kind, _number(timestamp), orjson.dumps(payload).decode()).addCallback(lambda _: None)

    @inlineCallbacks
    def journal(self, kind: str, since: float) -> Any:
        rows = yield self._redis.zrangebyscore(
            f"{self.prefix}journal:{kind}", _number(since), "+inf", withscores=True)
        return [{"kind": kind, "timestamp": float(score), "payload": orjson.loads(member.split(":", 1)[1])}
                for member, score in rows]

    # Backups

    @inlineCallbacks
    def export(self) -> Any:
        """
        :return: a Deferred firing with every key under the prefix, typed
            (``[[key without prefix, type, value], ...]``), read atomically.
        """
        entries = orjson.loads((yield self._eval(_EXPORT)))
        return entries if isinstance(entries, list) else []  # Lua encodes an empty table as {}

    def import_keys(self, entries: list) -> Deferred:
        """Replace everything under the prefix with ``entries`` (as ``export`` gave them), atomically."""
        return self._eval(_IMPORT, orjson.dumps(entries).decode())

    @staticmethod
    def _history_entry(role: str, text: str, event_id: str, timestamp: float) -> str:
        if not text:
            return ""
        return orjson.dumps({"role": role, "text": text, "event_id": event_id, "timestamp": timestamp}).decode()

    @staticmethod
    def _item_json(item: OutboxItem, now: float) -> str:
        return orjson.dumps({
            "id": item.id, "session_id": item.session_id, "channel": item.channel, "text": item.text,
            "dedupe_key": item.dedupe_key, "reply_to": item.reply_to, "created_at": item.created_at or now,
        }).decode()
