"""The bus: carries messages from whoever publishes to the hub of every worker."""
import logging

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import BoundedSemaphore

from rulecast.logs import fields

__all__ = ["Bus", "BusUnavailable"]

log = logging.getLogger("rulecast.bus")


class BusUnavailable(Exception):
    """The message could not be sequenced and stored; it was not accepted."""


class Bus:
    """The logic every backend shares: hand messages to the one sequencer, take the
    sequenced stream back in id order, fill any gap from the store, feed the hub.

    A backend overrides the transport: :meth:`_sequence` (get ids for new messages,
    stored, before returning) and, when messages arrive from elsewhere, calls
    :meth:`_dispatch` with each in the order received.

    Publishing is a group commit: one greenlet, the committer, gathers what is
    published and hands it to :meth:`_sequence` as one group, with at most
    :attr:`max_in_flight` groups being stored at once; whatever is published while
    they are busy waits and goes in the next group, together. A store transaction (or a
    round trip to the sequencer or to Redis) then costs once per group instead of once
    per message, and the busier the server, the larger the groups. Every publisher
    still returns only once its own messages are stored.
    """

    #: Groups being stored at once. One for a store that blocks the process while it
    #: writes (a second could only wait); more where a group waits on a remote answer,
    #: so that one whose answer was lost and is being resolved does not hold up others.
    max_in_flight = 4

    def __init__(self, store, hub, hook, metrics):
        self.store = store
        self.hub = hub
        self.hook = hook
        self.metrics = metrics
        #: The largest id handed to this worker's hub.
        self.last_id = store.last_id()
        self._waiting = []  # (items, AsyncResult) of publishers the committer has not taken
        self._wake = Event()
        self._committer = None
        self._slots = BoundedSemaphore(self.max_in_flight)

    #: False while this worker cannot reach the sequencer (shown by /healthz).
    healthy = True

    def start(self):
        """Begin receiving (backends that listen spawn their greenlet here)."""

    def stop(self):
        """Stop receiving and release the transport."""
        if self._committer is not None:
            self._committer.kill()

    def publish(self, channel, data):
        """Sequence, store and deliver one message; return it with its id."""
        return self.publish_many([(channel, data)])[0]

    def publish_many(self, items):
        """Sequence, store and deliver ``(channel, data)`` pairs; return the messages.
        Raises :class:`BusUnavailable` when they could not be stored."""
        if not items:
            return []
        done = AsyncResult()
        self._waiting.append((items, done))
        self._wake.set()
        if self._committer is None or self._committer.dead:
            self._committer = gevent.spawn(self._commit_loop)
        messages = done.get()
        self.metrics.published.inc(len(messages))
        debug = log.isEnabledFor(logging.DEBUG)
        hook = self.hook.rulecast_message_published
        # pluggy's call costs a twentieth of a publish even with nobody listening.
        listened = bool(hook.get_hookimpls())
        for message in messages:
            if debug:
                log.debug("message", extra=fields(id=message.id, channel=message.channel))
            if listened:
                try:
                    hook(message=message)
                except Exception:
                    log.exception("plugin hook rulecast_message_published failed on %r",
                                  message)
        return messages

    def _commit_loop(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            if not self._waiting:
                continue
            self._slots.acquire()  # meanwhile, more publishers join the group
            group, self._waiting = self._waiting, []
            if self.max_in_flight == 1:
                self._commit_group(group)
            else:
                gevent.spawn(self._commit_group, group)

    def _commit_group(self, group):
        try:
            self._commit(group)
        finally:
            self._slots.release()

    def _commit(self, group):
        """Sequence the items of every publisher in ``group`` in one call and hand each
        its messages. Bad data (not JSON) fails only its own publisher: the group is
        then sequenced publisher by publisher."""
        try:
            messages = self._sequence([item for items, _ in group for item in items])
        except (TypeError, ValueError) as exc:
            if len(group) == 1:
                group[0][1].set_exception(exc)
            else:
                for one in group:
                    self._commit([one])
            return
        except BaseException as exc:
            for _, done in group:
                done.set_exception(exc if isinstance(exc, Exception) else
                                   BusUnavailable("stopped while storing"))
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for items, done in group:
            done.set(messages[at:at + len(items)])
            at += len(items)

    def _sequence(self, items):
        """Store ``items`` in one transaction; return their messages. Raise
        :class:`BusUnavailable` when nothing was stored, TypeError or ValueError when an
        item's data is not JSON (before anything is stored)."""
        raise NotImplementedError

    def _dispatch(self, message):
        """Deliver a sequenced message, exactly once and in id order."""
        if message.id <= self.last_id:
            return
        if message.id > self.last_id + 1:
            self.catch_up(message.id - 1)
        self._deliver(message)

    def catch_up(self, upto):
        """Deliver the stored messages up to id ``upto`` this worker has not had: lost
        on the way (nanomsg PUB/SUB drops when a reader lags), the store has them."""
        missed = self.store.between(self.last_id, upto)
        self.metrics.gaps_repaired.inc(len(missed))
        for message in missed:
            self._deliver(message)
        self.last_id = max(self.last_id, upto)  # pruned ones are gone for everyone

    def _deliver(self, message):
        self.last_id = message.id
        self.hub.deliver(message)
