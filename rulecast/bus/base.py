"""The bus: carries messages from whoever publishes to the hub of every worker."""
import logging

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
    """

    def __init__(self, store, hub, hook, metrics):
        self.store = store
        self.hub = hub
        self.hook = hook
        self.metrics = metrics
        #: The largest id handed to this worker's hub.
        self.last_id = store.last_id()

    #: False while this worker cannot reach the sequencer (shown by /healthz).
    healthy = True

    def start(self):
        """Begin receiving (backends that listen spawn their greenlet here)."""

    def stop(self):
        """Stop receiving and release the transport."""

    def publish(self, channel, data):
        """Sequence, store and deliver one message; return it with its id."""
        return self.publish_many([(channel, data)])[0]

    def publish_many(self, items):
        """Sequence, store and deliver ``(channel, data)`` pairs; return the messages.
        Raises :class:`BusUnavailable` when they could not be stored."""
        messages = self._sequence(items)
        self.metrics.published.inc(len(messages))
        for message in messages:
            log.info("message", extra=fields(id=message.id, channel=message.channel))
            try:
                self.hook.rulecast_message_published(message=message)
            except Exception:
                log.exception("plugin hook rulecast_message_published failed on %r", message)
        return messages

    def _sequence(self, items):
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
