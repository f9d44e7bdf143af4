"""The Redis store: message history and inbox read marks shared by every host.

Layout, every key under one hash tag (``{rulecast}:`` by default) so that each script
touches a single Redis Cluster slot:

=====================  =======  ====================================================
``{p}:id``             string   the last id ever assigned (INCR); never goes back
``{p}:msg``            hash     id -> the message's wire frame (JSON), the one copy
``{p}:ch:<channel>``   zset     the channel's ids (score = member = id)
``{p}:time``           zset     id scored by the message's time (ms since 1970):
                                the age limit, and KEEP_RECENT, without a scan
``{p}:channels``       set      channel names that hold messages (for prune)
``{p}:read``           hash     user -> inbox read mark
``{p}:op:<token>``     string   the outcome of one publish, for a minute: lets a
                                publisher that lost its connection learn whether
                                its messages were stored (see :meth:`resolve`)
``{p}:messages``       pub/sub  where the Redis bus announces stored messages
=====================  =======  ====================================================

Writes are Lua scripts, each atomic: the id, the history and (for the bus) the PUBLISH
happen in one step, so whenever ``{p}:id`` reads N every message up to N is stored and
was announced, in id order. Why sorted sets and not streams: see docs/deployment.md.
"""
import json
import logging
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rulecast.message import Message, RawJSON
from rulecast.store.base import Store
from rulecast.store.redis_scripts import (APPEND, DROP, MARK_READ, QUERY, RAISE_ID, RESOLVE,
                                         TRIM)

__all__ = ["RedisStore", "redis_module", "redact", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install rulecast[redis]"

# Messages per HMGET inside a script (Lua's unpack() has a stack limit) and per
# pipeline command from Python.
CHUNK = 1000


def redis_module():
    """The redis-py package, imported on first use: only Redis setups need it."""
    try:
        import redis
    except ImportError as exc:
        raise ImportError("Redis support needs the redis package (%s); install it with: %s"
                          % (exc, INSTALL_HINT)) from None
    return redis


def split_url(url):
    """``(redis-py URL, key prefix)``: our own ``prefix=`` query option is taken out."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "rulecast"
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            rest.append((key, value))
    if not prefix or any(c in prefix for c in "{}"):
        raise ValueError("store %r: prefix must be a non-empty name without braces" % url)
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def redact(url):
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc="%s:***@%s" % (user, netloc)))


def server_of(url):
    """What names one Redis server and keyspace in ``url``: the bus and the store must
    agree on it (host, port or socket path, db number, key prefix)."""
    redis_url, prefix = split_url(url)
    kwargs = redis_module().connection.parse_url(redis_url)
    return (urlsplit(url).scheme.lower(), kwargs.get("host", "localhost"),
            int(kwargs.get("port") or 6379), kwargs.get("path"), int(kwargs.get("db") or 0),
            prefix)


def _time_ms(text):
    """Milliseconds since 1970 of an ISO 8601 time (a naive one counts as UTC)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ValueError("time %r is not an ISO 8601 time" % (text,)) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def _dumps(obj):
    if type(obj) is RawJSON:
        return obj.decode("utf-8")
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _message(frame):
    f = json.loads(frame)
    message = Message(f["id"], f["channel"], f["time"], f["data"])
    message._json = frame  # stored as the wire form: reuse it
    return message


def _channel_list(channels):
    if isinstance(channels, str):
        return [channels]
    return list(dict.fromkeys(channels))


class RedisStore(Store):
    """History and read marks in Redis, shared by every worker of every host.

    ``url``: ``redis://[[user]:password@]host[:port][/db][?prefix=NAME&…]``, or
    ``rediss://`` for TLS; query options other than ``prefix`` go to redis-py
    (``max_connections``, ``socket_timeout``…).
    """

    #: Seconds a message is kept even past max_per_channel (as SQLiteStore.KEEP_RECENT):
    #: a bus refilling a gap, or a client reconnecting just after a burst, finds it.
    KEEP_RECENT = 60.0
    #: Seconds Redis remembers what became of a publish (see :meth:`resolve`).
    OP_TTL = 60
    #: Messages per script run when pruning, so Redis never stalls long.
    PRUNE_BATCH = 2000
    #: Socket timeouts (seconds) and connections per process, unless the URL says.
    socket_timeout = 5.0
    connect_timeout = 2.0
    max_connections = 64
    #: Seconds a greenlet waits for a free pooled connection before failing.
    pool_timeout = 5.0

    def __init__(self, url, max_per_channel=1000, max_age=7 * 86400.0):
        redis = redis_module()
        from redis.backoff import NoBackoff
        from redis.retry import Retry
        self.url = url
        self.max_per_channel = max_per_channel
        self.max_age = max_age
        redis_url, prefix = split_url(url)
        self.prefix = "{%s}:" % prefix
        self.channel = (self.prefix + "messages").encode()
        # BlockingConnectionPool: a burst of greenlets waits for a connection instead
        # of opening hundreds. No retries: a script whose answer was lost must not run
        # twice; the bus resolves such a publish with its token instead.
        # The URL's own options (?max_connections=, ?socket_timeout=…) win.
        self.pool = redis.BlockingConnectionPool.from_url(
            redis_url, socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.connect_timeout,
            max_connections=self.max_connections, timeout=self.pool_timeout,
            retry=Retry(NoBackoff(), 0))
        self.client = redis.Redis(connection_pool=self.pool)
        self._append = self.client.register_script(APPEND)
        self._resolve = self.client.register_script(RESOLVE)
        self._query = self.client.register_script(QUERY)
        self._mark_read = self.client.register_script(MARK_READ)
        self._raise_id = self.client.register_script(RAISE_ID)
        self._drop = self.client.register_script(DROP)
        self._trim = self.client.register_script(TRIM)

    def __repr__(self):
        return "<RedisStore %s>" % self.describe()

    def describe(self):
        """Where the data is, for messages (no password)."""
        kw = self.pool.connection_kwargs
        where = kw.get("path") or "%s:%s" % (kw.get("host", "localhost"), kw.get("port", 6379))
        return "redis %s db %s prefix %s" % (where, kw.get("db", 0), self.prefix)

    # -- keys ----------------------------------------------------------------------

    def _k(self, name):
        return self.prefix + name

    def _ck(self, channel):
        return self.prefix + "ch:" + channel

    # -- writes ----------------------------------------------------------------------

    def append_many(self, items, publish=False, token=None):
        """As :meth:`Store.append_many`; with ``publish`` the same script also PUBLISHes
        the frames on :attr:`channel`, and with ``token`` Redis remembers the outcome
        for :meth:`resolve`. A batch is one script: all of it or none of it."""
        args, keys, out = [], [], []
        for channel, data, time in items:
            # Encode and check first: bad data fails before anything is written.
            if not isinstance(channel, str) or not channel:
                raise TypeError("channel must be a non-empty string, got %r" % (channel,))
            data_json = _dumps(data)
            if time is None:
                args += [channel, _dumps(channel), "", "", data_json]
            else:
                args += [channel, _dumps(channel), _dumps(time), _time_ms(time), data_json]
            keys.append(self._ck(channel))
            out.append((channel, data, time))
        if not items:
            return []
        first, now = self._append(
            keys=[self._k("id"), self._k("msg"), self._k("time"), self._k("channels"),
                  self._k("op:" + (token or ""))] + keys,
            args=[int(self.KEEP_RECENT * 1000),
                  -1 if self.max_per_channel is None else self.max_per_channel,
                  self.channel if publish else "", "1" if token else "", self.OP_TTL] + args)
        now = json.loads(now)
        return [(Message.encoded if type(data) is RawJSON else Message)(
                    first + i, channel, now if time is None else time, data)
                for i, (channel, data, time) in enumerate(out)]

    def append_requests(self, requests):
        """One script per request: each script is one publish, with its own token."""
        out = []
        for token, items in requests:
            try:
                out.append(self.append_many([(c, d, None) for c, d in items], token=token))
            except redis_module().ResponseError as exc:
                if not str(exc).startswith("REFUSED"):
                    raise
                out.append(None)
        return out

    def resolve(self, token, items):
        """The messages the publish with ``token`` stored, or None when it stored
        nothing; from then on it never will (a late run of it is refused)."""
        got = self._resolve(keys=[self._k("op:" + token), self._k("msg")], args=[self.OP_TTL])
        if got is None:
            return None
        first, frames = got[0], got[1:]
        out = []
        for i, (channel, data) in enumerate(items):
            frame = frames[i] if i < len(frames) else None
            out.append(_message(frame) if frame else Message(first + i, channel, None, data))
        return out

    def raise_last_id(self, seen):
        """Make sure ids go on above ``seen`` (an id some worker has handed out), even
        if Redis lost its data; returns the last id Redis had."""
        return int(self._raise_id(keys=[self._k("id")], args=[int(seen)]))

    def mark_read(self, user, upto):
        return int(self._mark_read(keys=[self._k("read")], args=[user, int(upto)]))

    # -- reads ------------------------------------------------------------------------

    def last_id(self):
        return int(self.client.get(self._k("id")) or 0)

    def _select(self, after, channels, limit, order="asc"):
        channels = _channel_list(channels)
        if not channels or limit == 0:
            return []
        frames = self._query(
            keys=[self._k("msg")] + [self._ck(c) for c in channels],
            args=[int(after), -1 if limit is None else int(limit), order])
        return [_message(f) for f in frames if f]

    def since(self, after_id, channels, limit=None):
        return self._select(after_id, channels, limit)

    def latest(self, channels, limit):
        if not limit:
            return []
        return self._select(0, channels, limit, "desc")

    def between(self, after_id, upto_id):
        out = []
        start = int(after_id) + 1
        while start <= upto_id:
            end = min(int(upto_id), start + 10 * CHUNK - 1)
            pipe = self.client.pipeline(transaction=False)
            for s in range(start, end + 1, CHUNK):
                pipe.hmget(self._k("msg"), list(range(s, min(end, s + CHUNK - 1) + 1)))
            for frames in pipe.execute():
                out += [_message(f) for f in frames if f]
            start = end + 1
        return out

    def count_since(self, after_id, channels):
        channels = _channel_list(channels)
        if not channels:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for channel in channels:
            pipe.zcount(self._ck(channel), "(%d" % int(after_id), "+inf")
        return sum(pipe.execute())

    def last_read(self, user):
        return int(self.client.hget(self._k("read"), user) or 0)

    # -- limits ----------------------------------------------------------------------

    def prune(self):
        """A full pass: the age limit over all history, then the count limit over every
        channel (appends already trim the channel they write to, oldest first)."""
        gone = 0
        if self.max_age is not None:
            gone += self._prune_age()
        if self.max_per_channel is not None:
            gone += self._prune_counts()
        return gone

    def prune_shared(self, every):
        """:meth:`prune` unless another process of any host did within ``every``
        seconds: many workers, one pass."""
        if not self.client.set(self._k("pruned"), b"1", nx=True, px=int(every * 1000)):
            return 0
        return self.prune()

    def _prune_age(self):
        seconds, micros = self.client.time()
        cutoff = seconds * 1000 + micros // 1000 - int(self.max_age * 1000)
        gone = 0
        while True:
            ids = self.client.zrangebyscore(self._k("time"), "-inf", "(%d" % cutoff,
                                            start=0, num=self.PRUNE_BATCH)
            if not ids:
                return gone
            frames = self.client.hmget(self._k("msg"), ids)
            names = [json.loads(f)["channel"] if f else "" for f in frames]
            args = [a for pair in zip(ids, names) for a in pair]
            gone += self._drop(
                keys=[self._k("msg"), self._k("time"), self._k("channels")]
                + [self._ck(n) if n else self._k("none") for n in names], args=args)
            if len(ids) < self.PRUNE_BATCH:
                return gone

    def _prune_counts(self):
        gone, cursor = 0, 0
        keep = int(self.KEEP_RECENT * 1000)
        while True:
            cursor, names = self.client.sscan(self._k("channels"), cursor, count=500)
            names = [n.decode("utf-8") for n in names]
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.zcard(self._ck(name))
            for name, card in zip(names, pipe.execute()):
                if card > self.max_per_channel or card == 0:
                    while True:
                        n, looked = self._trim(
                            keys=[self._k("msg"), self._k("time"), self._k("channels"),
                                  self._ck(name)],
                            args=[self.max_per_channel, keep, name, self.PRUNE_BATCH])
                        gone += n
                        if looked < self.PRUNE_BATCH or n < looked:
                            break
            if cursor == 0:
                return gone

    def close(self):
        self.pool.disconnect()
