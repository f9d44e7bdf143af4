"""The Redis bus: every worker of every host, joined through one Redis server.

A message's path: the worker that publishes runs one Lua script (INCR the id, store
the message, PUBLISH its frame), so ids, history and the order of publication are one
and the same. Every worker (the publisher's own too) takes the frames from a pub/sub
subscription and hands them to :meth:`Bus._dispatch`. Pub/sub is at-most-once: a
subscriber that was disconnected, or cut off by Redis for lagging
(``client-output-buffer-limit pubsub``), misses frames; ids reveal the gap and the store
fills it, and a poll of the last id every half second reveals a loss at the very end of
a burst. There is no sequencer process.
"""
import json
import logging
import random
import time
import uuid

import gevent
from prometheus_client import Counter, Gauge

from rulecast.bus.base import Bus, BusUnavailable
from rulecast.message import Message
from rulecast.store.redis import RedisStore, redact, redis_module, server_of

__all__ = ["RedisBus"]

log = logging.getLogger("rulecast.bus")


class RedisBus(Bus):
    """Publishes through the Redis store's script and listens on Redis pub/sub."""

    #: Seconds between polls of the last id (and checks that Redis answers).
    poll_every = 0.5
    #: Seconds between pings on the subscription; silent three times that: dead.
    ping_every = 2.0
    #: Reconnection back-off: first and longest wait, in seconds.
    first_delay = 0.1
    max_delay = 2.0
    #: Seconds a publish whose answer was lost waits for Redis to say what became of it.
    timeout = 5.0
    #: Seconds to wait for Redis at start-up before giving up.
    start_wait = 30.0
    #: Messages read from the store per step when refilling a long gap.
    catch_up_page = 1000
    #: Seconds between history prunes; one process of all hosts does each.
    prune_every = 600.0

    def __init__(self, store, hub, hook, metrics, url):
        if not isinstance(store, RedisStore):
            raise SystemExit(
                "bus: %s needs the Redis store on the same server (store: %s), because one "
                "script stores and publishes each message; got store: %s" % (
                    redact(url), redact(url), getattr(store, "path", store)))
        if server_of(url) != server_of(store.url):
            raise SystemExit(
                "bus: %s and store: %s must name the same Redis server, db and prefix: one "
                "script stores and publishes each message" % (redact(url), redact(store.url)))
        self.url = url
        self.store = store
        self.redis = redis_module()
        self.connected = False
        self.down_since = time.monotonic()
        self.greenlets = []
        self.pubsub = None
        self.connected_gauge = Gauge(
            "rulecast_redis_connected", "1 while this worker is subscribed to Redis.",
            registry=metrics.registry)
        self.reconnects = Counter(
            "rulecast_redis_reconnects", "Times this worker lost Redis and subscribed again.",
            registry=metrics.registry)
        _wait_for(store, self.start_wait)
        super().__init__(store, hub, hook, metrics)

    @property
    def healthy(self):
        """True while subscribed and Redis answers the polls."""
        return self.connected

    def start(self):
        self.greenlets = [gevent.spawn(self._listen), gevent.spawn(self._prune_loop)]

    def stop(self):
        super().stop()
        gevent.killall(self.greenlets)
        self._close_pubsub()

    # -- publishing ----------------------------------------------------------------------

    def _sequence(self, items):
        if not self.connected:
            raise BusUnavailable("Redis (%s) is unreachable for %.0f s; not stored" % (
                self.store.describe(), time.monotonic() - self.down_since))
        token = uuid.uuid4().hex
        batch = [(c, d, None) for c, d in items]
        try:
            return self.store.append_many(batch, publish=True, token=token)
        except (self.redis.ConnectionError, self.redis.TimeoutError) as exc:
            # The script may have run and only its answer been lost: ask Redis.
            log.warning("bus: lost Redis while publishing (%s); asking what was stored", exc)
            return self._resolve(token, items, exc)
        except self.redis.RedisError as exc:
            raise BusUnavailable("Redis refused the message: %s" % exc) from exc
        except (TypeError, ValueError):
            raise  # not JSON: the script never ran
        except Exception as exc:  # as LocalBus: a store failure is never accepted
            raise BusUnavailable("store failed: %s" % exc) from exc

    def _resolve(self, token, items, error):
        deadline = time.monotonic() + self.timeout
        delay = self.first_delay
        while True:
            try:
                messages = self.store.resolve(token, items)
            except (self.redis.ConnectionError, self.redis.TimeoutError):
                if time.monotonic() + delay > deadline:
                    raise BusUnavailable(
                        "lost Redis while publishing (%s) and it did not come back within "
                        "%gs: whether the message was stored is unknown" % (
                            error, self.timeout)) from error
                gevent.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if messages is None:
                raise BusUnavailable("lost Redis while publishing (%s); not stored" % error)
            log.info("bus: the publish was stored before the connection broke: ids %d-%d",
                     messages[0].id, messages[-1].id)
            return messages

    # -- receiving -----------------------------------------------------------------------

    def catch_up(self, upto):
        """As :meth:`Bus.catch_up`, a page at a time: a long outage may have left
        many messages to refill."""
        while self.last_id < upto:
            super().catch_up(min(upto, self.last_id + self.catch_up_page))

    def _listen(self):
        """Subscribe, refill what was missed, take the stream; on any failure mark this
        worker unhealthy and start again after a back-off."""
        delay = self.first_delay
        while True:
            try:
                self._subscribe()
                delay = self.first_delay
                self._stream()
            except Exception as exc:  # Redis errors, and anything else: never stop
                if not isinstance(exc, (self.redis.RedisError, OSError)):
                    log.exception("bus: the Redis listener failed; starting it again")
                elif self.connected:
                    log.error("bus: lost Redis (%s): %s; reconnecting, publishes answer 503 "
                              "meanwhile", self.store.describe(), exc)
                    self.reconnects.inc()
                elif delay == self.first_delay:
                    log.warning("bus: Redis (%s) unreachable: %s; retrying",
                                self.store.describe(), exc)
                else:
                    log.debug("bus: Redis still unreachable: %s", exc)
                self._set_connected(False)
                self._close_pubsub()
                gevent.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_delay)

    def _subscribe(self):
        self.pubsub = self.store.client.pubsub()
        self.pubsub.subscribe(self.store.channel)
        deadline = time.monotonic() + self.store.socket_timeout
        while True:
            reply = self.pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if reply is not None and reply["type"] == "subscribe":
                break
            if time.monotonic() > deadline:
                raise self.redis.TimeoutError("no answer to SUBSCRIBE")
        # From here on every new message reaches the subscription; what was stored
        # before (while this worker was away) comes from the store.
        last = self.store.raise_last_id(self.last_id)
        if last < self.last_id:
            # Ids must never go back: clients resume with since=. The history is gone.
            log.error("bus: Redis's last id %d is below the %d this worker delivered: Redis "
                      "lost its data (is persistence on?); ids go on from %d", last,
                      self.last_id, self.last_id)
            last = self.last_id
        self.catch_up(last)
        self._set_connected(True)
        log.info("bus: subscribed to Redis (%s), last id %d", self.store.describe(), last)

    def _stream(self):
        pubsub = self.pubsub
        now = time.monotonic()
        next_poll, next_ping, heard = now + self.poll_every, now + self.ping_every, now
        ahead = 0  # the last id the previous poll saw
        while True:
            reply = pubsub.get_message(timeout=max(0.0, next_poll - time.monotonic()))
            now = time.monotonic()
            if reply is not None:
                heard = now
                if reply["type"] == "message":
                    for raw in reply["data"].split(b"\n"):
                        frame = json.loads(raw)
                        message = Message(frame["id"], frame["channel"], frame["time"],
                                          frame["data"])
                        message._json = raw  # the stored frame is the wire form
                        self._dispatch(message)
            if now >= next_poll:
                # What an earlier poll saw and pub/sub has still not brought was lost
                # (the newest messages of a burst): refill it. One poll of slack, so a
                # frame still on its way is not fetched twice.
                if ahead > self.last_id:
                    self.catch_up(ahead)
                ahead = self.store.last_id()
                next_poll = now + self.poll_every
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + self.ping_every
            if now - heard > 3 * self.ping_every:
                raise self.redis.TimeoutError("the subscription is silent, pings unanswered")

    def _set_connected(self, up):
        if up != self.connected:
            self.connected = up
            self.down_since = time.monotonic()
            self.connected_gauge.set(1 if up else 0)

    def _close_pubsub(self):
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass

    def _prune_loop(self):
        while True:
            gevent.sleep(self.prune_every * random.uniform(0.9, 1.1))
            try:
                gone = self.store.prune_shared(self.prune_every)
                if gone:
                    log.info("store: pruned %d old messages", gone)
            except Exception:
                log.exception("pruning history failed")


def _wait_for(store, wait):
    """Return once Redis answers; SystemExit after ``wait`` seconds of trying."""
    redis = redis_module()
    deadline, delay = time.monotonic() + wait, 0.1
    while True:
        try:
            return store.last_id()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                raise SystemExit("bus: Redis (%s) unreachable for %gs at start-up: %s"
                                 % (store.describe(), wait, exc)) from None
            log.warning("bus: waiting for Redis (%s): %s", store.describe(), exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
