"""The in-process bus: one worker is its own sequencer."""
from rulecast.bus.base import Bus, BusUnavailable


class LocalBus(Bus):
    """Stores and delivers in the committer, with no yield in between, so the hub
    sees messages in exactly the order the store numbered them."""

    max_in_flight = 1  # SQLite writes block the whole process

    def _sequence(self, items):
        try:
            messages = self.store.append_many([(c, d, None) for c, d in items])
        except (TypeError, ValueError):
            raise  # not JSON: nothing was stored, and the data, not the store, is at fault
        except Exception as exc:
            raise BusUnavailable("store failed: %s" % exc) from exc
        for message in messages:
            self._dispatch(message)
        return messages
