"""The Redis store against the Store interface (as tests/test_store.py for SQLite), and
what only it does: shared ids, trimming in the append script, publish outcomes."""
import subprocess
import sys

import pytest

from rulecast.message import Message
from rulecast.store import Store, open_store
from rulecast.store.redis import RedisStore
from tests.conftest import ROOT
from tests.test_redis import RedisServer

OLD = "2001-01-01T00:00:00.000Z"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def url(redis_url):
    """The module's Redis, emptied for each test."""
    server = RedisStore(redis_url)
    server.client.flushall()
    server.close()
    return redis_url


@pytest.fixture
def opened(url):
    """Open RedisStores on the test's Redis; all closed at the end."""
    stores = []

    def make(**kwargs):
        stores.append(RedisStore(url, **kwargs))
        return stores[-1]

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def store(opened):
    return opened()


def ids(messages):
    return [m.id for m in messages]


def test_is_a_store(store):
    """RedisStore implements the Store interface."""
    assert isinstance(store, Store)


def test_ids_strictly_increasing(store):
    """Every appended message gets a larger id than the one before."""
    got = [store.append("topic:a", {"n": i}).id for i in range(5)]
    got += ids(store.append_many([("topic:b", {"n": i}, None) for i in range(5)]))
    assert got == list(range(1, 11))
    assert store.last_id() == got[-1]


def test_ids_shared_by_two_store_objects(opened):
    """Two store objects (two hosts) draw from one sequence of ids."""
    a, b = opened(), opened()
    got = [s.append("topic:a", {}).id for s in (a, b, a, b)]
    assert got == [1, 2, 3, 4]


def test_append_many_returns_messages(store):
    """append_many returns Message objects in id order, stamped with a time when None."""
    out = store.append_many([("user:bob", {"a": 1}, None), ("topic:x", {"b": 2}, OLD)])
    assert all(isinstance(m, Message) for m in out)
    assert ids(out) == sorted(ids(out))
    assert out[0].time.endswith("Z") and len(out[0].time) == len(OLD) and out[1].time == OLD
    assert [m.channel for m in out] == ["user:bob", "topic:x"]
    assert [m.time for m in store.since(0, ["user:bob", "topic:x"])] == [m.time for m in out]


@pytest.mark.parametrize("bad", [(None, {}, None), ("topic:a", {"x": object()}, None),
                                 ("topic:a", {}, "yesterday")])
def test_append_many_is_all_or_nothing(store, bad):
    """A bad item in append_many leaves none of the batch stored and uses no id."""
    store.append("topic:a", {})
    with pytest.raises((TypeError, ValueError)):
        store.append_many([("topic:a", {"n": 1}, None), bad])
    assert len(store.since(0, ["topic:a"])) == 1
    assert store.last_id() == 1
    assert store.append("topic:a", {}).id == 2


def test_last_id_zero_when_empty(store):
    """last_id is 0 before anything was stored."""
    assert store.last_id() == 0


def test_ids_not_reused_after_pruning_newest(store):
    """Pruning the newest messages does not let their ids be handed out again."""
    store.append("topic:a", {})
    newest = store.append("topic:a", {}, time=OLD).id
    assert store.prune() == 1
    assert store.last_id() == newest
    assert store.append("topic:a", {}).id > newest


def test_since_filters_channels_in_id_order(store):
    """since() returns only the asked channels, after the id, in id order, once each."""
    m = store.append_many([(c, {"c": c}, None)
                           for c in ["user:a", "topic:x", "user:b", "user:a", "group:g"]])
    got = store.since(m[0].id, ["user:a", "group:g", "user:a"])
    assert ids(got) == [m[3].id, m[4].id]
    assert [g.data for g in got] == [{"c": "user:a"}, {"c": "group:g"}]


def test_since_accepts_any_iterable(store):
    """since() takes a generator, a set or a lone string of channels."""
    m = store.append("topic:x", {})
    assert ids(store.since(0, (c for c in ["topic:x"]))) == [m.id]
    assert ids(store.since(0, {"topic:x"})) == [m.id]
    assert ids(store.since(0, "topic:x")) == [m.id]


def test_since_limit(store):
    """since() with a limit returns the oldest `limit` matching messages."""
    m = store.append_many([("topic:x", {"n": i}, None) for i in range(10)])
    assert ids(store.since(m[1].id, ["topic:x"], limit=3)) == ids(m[2:5])
    assert store.since(0, ["topic:x"], limit=0) == []


def test_data_round_trips_json(store):
    """Stored data comes back decoded, unicode, newlines and nesting intact."""
    data = {"text": "héllo ✓\nline two \u2028", "list": [1, 2.5, None, True],
            "nested": {"k": "v"}}
    store.append("topic:x", data)
    got = store.since(0, ["topic:x"])[0]
    assert got.data == data
    assert got.frame()["data"] == data and b'"type":"message"' in got.json


def test_between(store):
    """between() returns every channel's messages in (after, upto], in id order."""
    m = store.append_many([(c, {}, None) for c in ["user:a", "topic:x", "user:b", "group:g"]])
    assert ids(store.between(m[0].id, m[2].id)) == [m[1].id, m[2].id]
    assert store.between(m[3].id, m[3].id + 5) == []


def test_latest_newest_oldest_first(store):
    """latest() returns the newest `limit` messages of the channels, oldest first."""
    m = store.append_many([(c, {}, None) for c in
                           ["user:a", "group:g", "topic:x", "user:a", "group:g", "user:a"]])
    assert ids(store.latest(["user:a", "group:g", "user:a"], 3)) == [m[3].id, m[4].id, m[5].id]
    assert ids(store.latest(["user:a", "group:g"], 10)) == [m[0].id, m[1].id, m[3].id,
                                                            m[4].id, m[5].id]


def test_history_survives_a_new_store_object(opened):
    """Messages and read marks written through one store object are there for the next."""
    s = opened()
    m = s.append("user:a", {"x": 1})
    s.mark_read("a", m.id)
    s.close()
    s = opened()
    got = s.since(0, ["user:a"])
    assert ids(got) == [m.id] and got[0].data == {"x": 1}
    assert s.last_read("a") == m.id


def test_append_trims_the_channel_it_writes(opened):
    """Each append keeps only the newest max_per_channel old messages of its channel."""
    s = opened(max_per_channel=3, max_age=None)
    a = s.append_many([("topic:a", {}, OLD) for _ in range(5)])
    b = s.append_many([("topic:b", {}, OLD) for _ in range(2)])
    assert ids(s.since(0, ["topic:a"])) == ids(a[2:])
    assert ids(s.since(0, ["topic:b"])) == ids(b)
    assert s.prune() == 0


def test_prune_applies_a_lowered_count_limit(opened):
    """prune() trims channels not written since the limit was lowered."""
    opened(max_per_channel=10).append_many([("topic:a", {"n": n}, OLD) for n in range(6)])
    s = opened(max_per_channel=2, max_age=None)
    assert s.prune() == 4
    assert [m.data["n"] for m in s.since(0, ["topic:a"])] == [4, 5]


def test_recent_messages_outlive_the_count_limit(opened):
    """Messages younger than KEEP_RECENT stay past max_per_channel: a gap or a quick
    reconnect after a burst can still be filled."""
    s = opened(max_per_channel=3, max_age=None)
    s.append_many([("topic:a", {}, OLD) for _ in range(3)])
    fresh = s.append_many([("topic:a", {}, None) for _ in range(5)])
    assert s.prune() == 0
    assert ids(s.since(0, ["topic:a"])) == ids(fresh)


def test_prune_max_age(opened):
    """prune() deletes messages older than max_age and keeps recent ones."""
    s = opened(max_age=3600.0)
    s.append("topic:a", {}, time=OLD)
    s.append("topic:b", {}, time=OLD)
    recent = s.append("topic:a", {})
    assert s.prune() == 2
    assert ids(s.since(0, ["topic:a", "topic:b"])) == [recent.id]
    assert s.client.smembers(s.prefix + "channels") == {b"topic:a"}


def test_prune_shared_runs_once_per_period(opened):
    """prune_shared prunes in one process only while the period lasts."""
    a, b = opened(max_age=3600.0), opened(max_age=3600.0)
    a.append("topic:a", {}, time=OLD)
    b.append("topic:b", {}, time=OLD)
    assert a.prune_shared(60) == 2
    b.append("topic:c", {}, time=OLD)
    assert b.prune_shared(60) == 0


def test_mark_read_never_moves_backwards(store):
    """mark_read keeps the larger mark and returns the mark in force."""
    assert store.last_read("bob") == 0
    assert store.mark_read("bob", 10) == 10
    assert store.mark_read("bob", 4) == 10
    assert store.last_read("bob") == 10
    assert store.mark_read("bob", 12) == 12


def test_count_since(store):
    """count_since counts the channels' messages after the id."""
    m = store.append_many([(c, {}, None) for c in
                           ["user:a", "topic:x", "user:a", "group:g", "user:b"]])
    assert store.count_since(0, ["user:a", "group:g"]) == 3
    assert store.count_since(m[0].id, ["user:a", "group:g"]) == 2
    assert store.count_since(m[-1].id, ["user:a"]) == 0


def test_empty_channel_list(store):
    """Queries over no channels answer with nothing."""
    store.append("topic:a", {})
    assert store.since(0, []) == []
    assert store.latest([], 10) == []
    assert store.count_since(0, iter(())) == 0


def test_more_than_1000_channels(store):
    """Queries over many channels (more than one HMGET's worth) answer in id order."""
    channels = ["topic:%d" % i for i in range(1200)]
    m = store.append_many([(channels[(i * 7) % 1200], {"n": i}, None) for i in range(1200)])
    assert ids(store.since(0, channels)) == ids(m)
    assert ids(store.since(m[10].id, channels, limit=50)) == ids(m[11:61])
    assert ids(store.latest(channels, 20)) == ids(m[-20:])
    assert store.count_since(m[99].id, channels) == 1100
    assert ids(store.between(0, m[-1].id)) == ids(m)


def test_publish_announces_frames_in_id_order(store):
    """append_many(publish=True) PUBLISHes the stored frames, one batch per call."""
    listener = store.client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(store.channel)
    try:
        listener.get_message(timeout=1)
        out = store.append_many([("topic:a", {"n": 1}, None), ("topic:b", {"n": 2}, None)],
                                publish=True)
        store.append("topic:c", {})  # not announced
        got = listener.get_message(timeout=2)["data"].split(b"\n")
        assert got == [m.json for m in store.between(0, out[-1].id)]
        assert listener.get_message(timeout=0.2) is None
    finally:
        listener.close()


def test_resolve_finds_a_stored_publish(store):
    """resolve(token) returns the messages a publish with that token stored."""
    items = [("topic:a", {"n": 1}), ("topic:b", {"n": 2})]
    out = store.append_many([(c, d, None) for c, d in items], token="t1")
    got = store.resolve("t1", items)
    assert ids(got) == ids(out) and [m.data for m in got] == [{"n": 1}, {"n": 2}]


def test_resolve_refuses_a_publish_that_comes_later(store):
    """After resolve(token) found nothing, a late run of that publish stores nothing."""
    assert store.resolve("t2", [("topic:a", {})]) is None
    with pytest.raises(Exception, match="REFUSED"):
        store.append_many([("topic:a", {}, None)], token="t2")
    assert store.last_id() == 0


def test_raise_last_id_never_lowers(store):
    """raise_last_id lifts the id counter (Redis lost its data) but never lowers it."""
    store.append("topic:a", {})
    assert store.raise_last_id(50) == 1
    assert store.append("topic:a", {}).id == 51
    assert store.raise_last_id(3) == 51 and store.last_id() == 51


def test_prefix_separates_two_stores(url, opened):
    """Stores with different ?prefix= share one Redis without seeing each other."""
    a, b = opened(), RedisStore(url.replace("/0", "/0?prefix=other"))
    try:
        a.append("topic:a", {})
        assert b.last_id() == 0 and b.since(0, ["topic:a"]) == []
        assert all(k.startswith(b"{rulecast}:") for k in a.client.keys("*"))
    finally:
        b.close()


def test_open_store_redis(url):
    """open_store opens redis:// (and rediss://) URLs as a RedisStore with the limits."""
    s = open_store(url, max_per_channel=7)
    try:
        assert isinstance(s, RedisStore) and s.max_per_channel == 7
        assert s.last_id() == 0
    finally:
        s.close()
    tls = open_store("rediss://example.invalid:6380/1?prefix=x")
    assert isinstance(tls, RedisStore) and tls.prefix == "{x}:"


def test_missing_redis_package_names_the_fix():
    """Without redis-py, a redis:// store fails with the pip command that fixes it."""
    code = ("import sys; sys.modules['redis'] = None\n"
            "from rulecast.store import open_store\n"
            "open_store('redis://localhost:6379/0')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode != 0
    assert "pip install rulecast[redis]" in run.stderr.strip().splitlines()[-1]
