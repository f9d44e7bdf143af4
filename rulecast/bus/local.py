"""The in-process bus: one worker is its own sequencer."""
from rulecast.bus.base import Bus, BusUnavailable


class LocalBus(Bus):
    """Stores and delivers in the publishing greenlet, with no yield in between, so
    the hub sees messages in exactly the order the store numbered them."""

    def _sequence(self, items):
        try:
            messages = self.store.append_many([(c, d, None) for c, d in items])
        except Exception as exc:
            raise BusUnavailable("store failed: %s" % exc) from exc
        for message in messages:
            self._dispatch(message)
        return messages
