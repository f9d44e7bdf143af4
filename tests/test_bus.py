"""The bus: sequencing, group commit, exactly-once in-order dispatch, gap repair."""
import os
import signal
import threading
import time

import gevent
import pytest
import requests

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


class CountingStore(SQLiteStore):
    """A real SQLite store that records the size of every transaction it writes."""

    def __init__(self, path):
        super().__init__(path)
        self.transactions = []

    def append_many(self, items):
        self.transactions.append(len(items))
        return super().append_many(items)


def test_concurrent_publishes_share_one_transaction(tmp_path):
    """Publishes made while the committer is busy go in its next transaction together;
    each publisher gets its own messages, in the order it published."""
    store = CountingStore(str(tmp_path / "group.db"))
    bus = LocalBus(store, Hub(), manager().hook, Metrics())
    publishers = [gevent.spawn(bus.publish_many, [("topic:a", {"n": n}), ("topic:b", {"n": n})])
                  for n in range(50)]
    gevent.joinall(publishers, raise_error=True)
    assert sum(store.transactions) == 100 and len(store.transactions) <= 2
    got = [[(m.id, m.data["n"]) for m in g.value] for g in publishers]
    assert [pair for pairs in got for pair in pairs] == [
        (2 * n + i + 1, n) for n in range(50) for i in range(2)]
    assert bus.hub.ids == list(range(1, 101))


def test_bad_data_fails_only_its_publisher(tmp_path):
    """Data that is not JSON fails its own publish with TypeError; the others of the
    same group are stored."""
    bus, store, _ = make(tmp_path)
    good = [gevent.spawn(bus.publish, "topic:a", {"n": n}) for n in range(3)]
    bad = gevent.spawn(bus.publish, "topic:a", {"when": object()})
    gevent.joinall(good + [bad])
    assert isinstance(bad.exception, TypeError)
    assert [g.value.data["n"] for g in good] == [0, 1, 2]
    assert [m.data["n"] for m in store.since(0, ["topic:a"])] == [0, 1, 2]


class Burst:
    """Threads POSTing publishes back to back (single messages and batches of 5), each
    message marked uniquely; records what every answer said of its markers."""

    def __init__(self, server, threads=4):
        self.server = server
        self.accepted = {}  # marker -> id, from 202 answers
        self.refused = set()  # markers answered 503
        self.unknown = set()  # markers whose answer never came
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                        for t in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, thread):
        session, n = requests.Session(), 0
        headers = {"Authorization": "Bearer " + self.server.api_key}
        while not self.stop.is_set():
            size = 5 if n % 2 else 1
            markers = ["%d-%d" % (thread, n + i) for i in range(size)]
            n += size
            items = [{"channel": "topic:burst", "data": {"m": m}} for m in markers]
            try:
                r = session.post(self.server.url + "/rulecast/api/publish", headers=headers,
                                 json=items if size > 1 else items[0], timeout=20)
            except requests.RequestException:
                self.unknown.update(markers)
                session = requests.Session()
                time.sleep(0.02)
                continue
            if r.status_code == 202:
                body = r.json()
                self.accepted.update(zip(markers, body["ids"] if size > 1 else [body["id"]]))
            elif r.status_code == 503:
                self.refused.update(markers)
            else:
                raise AssertionError("unexpected answer %d: %s" % (r.status_code, r.text))

    def wait_accepted(self, count, timeout=20):
        deadline = time.time() + timeout
        while len(self.accepted) < count:
            assert time.time() < deadline, "only %d accepted" % len(self.accepted)
            time.sleep(0.01)

    def check(self, store_path):
        """Every accepted marker is stored once under its id; no refused one is."""
        store = SQLiteStore(store_path)
        try:
            stored = store.since(0, ["topic:burst"])
        finally:
            store.close()
        markers = [m.data["m"] for m in stored]
        assert len(markers) == len(set(markers)), "a message was stored twice"
        by_marker = {m.data["m"]: m.id for m in stored}
        assert {m: by_marker.get(m) for m in self.accepted} == self.accepted
        assert not self.refused & set(by_marker), "a message answered 503 was stored"
        return by_marker


def test_kill_9_during_burst_loses_no_accepted_message(make_server):
    """kill -9 of the only process during a burst: every 202-answered id is in history,
    under its message, exactly once."""
    s = make_server()
    with Burst(s) as burst:
        burst.wait_accepted(300)
        s.proc.kill()
        s.proc.wait(10)
    burst.check(os.path.join(s.dir, "var", "rulecast.db"))
    assert len(burst.accepted) >= 300


def test_sequencer_killed_during_burst_503_never_stored(make_server):
    """kill -9 of the sequencer during a burst: accepted messages are stored once, and
    what was answered 503 (no answer from the sequencer) is never stored, even when
    the sequencer had stored it before it died."""
    s = make_server(workers=2)
    workers = {w["pid"] for w in requests.get(s.url + "/rulecast/healthz").json()["workers"]}
    with open("/proc/%d/task/%d/children" % (s.proc.pid, s.proc.pid)) as f:
        sequencer, = [int(p) for p in f.read().split() if int(p) not in workers]
    with Burst(s) as burst:
        burst.wait_accepted(300)
        os.kill(sequencer, signal.SIGKILL)
        burst.wait_accepted(len(burst.accepted) + 300, timeout=40)  # a new sequencer
    burst.check(os.path.join(s.dir, "var", "rulecast.db"))


def test_publish_given_up_is_refused_when_the_sequencer_wakes(make_server):
    """A publish answered 503 because the sequencer was stopped past the timeout is
    never stored, though the stopped sequencer finds it in its socket when it wakes."""
    s = make_server(workers=2)
    workers = {w["pid"] for w in requests.get(s.url + "/rulecast/healthz").json()["workers"]}
    with open("/proc/%d/task/%d/children" % (s.proc.pid, s.proc.pid)) as f:
        sequencer, = [int(p) for p in f.read().split() if int(p) not in workers]
    headers = {"Authorization": "Bearer " + s.api_key}
    os.kill(sequencer, signal.SIGSTOP)
    try:
        r = requests.post(s.url + "/rulecast/api/publish", headers=headers, timeout=30,
                          json={"channel": "topic:late", "data": {"m": "given up"}})
        assert r.status_code == 503
    finally:
        os.kill(sequencer, signal.SIGCONT)
    deadline = time.time() + 15
    while True:  # the sequencer answers again: the late request is behind us
        r = requests.post(s.url + "/rulecast/api/publish", headers=headers, timeout=30,
                          json={"channel": "topic:late", "data": {"m": "after"}})
        if r.status_code == 202:
            break
        assert time.time() < deadline, r.text
        time.sleep(0.2)
    store = SQLiteStore(os.path.join(s.dir, "var", "rulecast.db"))
    try:
        assert [m.data["m"] for m in store.since(0, ["topic:late"])] == ["after"]
    finally:
        store.close()
