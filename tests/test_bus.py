"""The bus: sequencing, exactly-once in-order dispatch, gap repair from the store."""
import pytest

from rulecast import hookspecs
from rulecast.bus import Bus, LocalBus
from rulecast.metrics import Metrics
from rulecast.plugins import manager
from rulecast.store.sqlite import SQLiteStore


class Hub:
    def __init__(self):
        self.ids = []

    def deliver(self, message):
        self.ids.append(message.id)


def make(tmp_path, cls=LocalBus, pm=None):
    store = SQLiteStore(str(tmp_path / "bus.db"))
    metrics = Metrics()
    return cls(store, Hub(), (pm or manager()).hook, metrics), store, metrics


def test_local_publish_stores_and_delivers(tmp_path):
    """publish returns stored messages with increasing ids, delivered in order."""
    bus, store, _ = make(tmp_path)
    ms = bus.publish_many([("topic:a", {"n": 1}), ("topic:b", {"n": 2})])
    assert [m.id for m in ms] == [1, 2] and bus.hub.ids == [1, 2]
    assert [m.id for m in store.since(0, ["topic:a", "topic:b"])] == [1, 2]


def test_gap_filled_from_store(tmp_path):
    """A message that skips ids first delivers the missing ones from the store."""
    bus, store, metrics = make(tmp_path, cls=Bus)
    ms = store.append_many([("topic:a", {"n": n}, None) for n in range(5)])
    bus._dispatch(ms[0])
    bus._dispatch(ms[4])  # 2, 3, 4 were lost on the way
    assert bus.hub.ids == [1, 2, 3, 4, 5]
    assert metrics.gaps_repaired._value.get() == 3


def test_duplicates_and_old_ids_dropped(tmp_path):
    """A message at or below the last dispatched id is not delivered again."""
    bus, store, _ = make(tmp_path, cls=Bus)
    ms = store.append_many([("topic:a", {}, None) for _ in range(2)])
    for m in (ms[0], ms[1], ms[1], ms[0]):
        bus._dispatch(m)
    assert bus.hub.ids == [1, 2]


def test_message_published_hook_called_once(tmp_path):
    """rulecast_message_published sees each published message once, a failing hook is logged."""
    seen = []

    class Plugin:
        @hookspecs.hookimpl
        def rulecast_message_published(self, message):
            seen.append(message.id)
            raise RuntimeError("a broken add-on")

    pm = manager()
    pm.register(Plugin())
    bus, _, _ = make(tmp_path, pm=pm)
    bus.publish("topic:a", {})
    assert seen == [1] and bus.hub.ids == [1]


def test_store_failure_is_not_accepted(tmp_path):
    """When the store cannot write, publish raises BusUnavailable and delivers nothing."""
    import sqlite3

    from rulecast.bus import BusUnavailable

    class BrokenStore(SQLiteStore):
        def append_many(self, items):
            raise sqlite3.OperationalError("disk I/O error")

    store = BrokenStore(str(tmp_path / "broken.db"))
    bus = LocalBus(store, Hub(), manager().hook, Metrics())
    with pytest.raises(BusUnavailable, match="disk I/O error"):
        bus.publish("topic:a", {})
    assert bus.hub.ids == [] and bus.last_id == 0
