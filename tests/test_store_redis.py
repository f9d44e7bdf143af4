"""What only the Redis store does; what every store does is in test_store_contract.py."""
import subprocess
import sys

import pytest

from rulecast.store import open_store
from rulecast.store.redis import RedisStore
from tests.conftest import ROOT, store_opener

OLD = "2001-01-01T00:00:00.000Z"


@pytest.fixture
def opened(redis_url):
    """Opens RedisStores on the test's emptied Redis."""
    yield from store_opener(lambda **kw: RedisStore(redis_url, **kw))


@pytest.fixture
def store(opened):
    return opened()


def ids(messages):
    return [m.id for m in messages]


def test_ids_shared_by_two_store_objects(opened):
    """Two store objects (two hosts) draw from one sequence of ids."""
    a, b = opened(), opened()
    got = [s.append("topic:a", {}).id for s in (a, b, a, b)]
    assert got == [1, 2, 3, 4]


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


def test_since_accepts_a_lone_channel_string(store):
    """since() takes one channel name as a string, not as its characters."""
    m = store.append("topic:x", {})
    assert ids(store.since(0, "topic:x")) == [m.id]


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


def test_prefix_separates_two_stores(redis_url, opened):
    """Stores with different ?prefix= share one Redis without seeing each other."""
    a, b = opened(), RedisStore(redis_url.replace("/0", "/0?prefix=other"))
    try:
        a.append("topic:a", {})
        assert b.last_id() == 0 and b.since(0, ["topic:a"]) == []
        assert all(k.startswith(b"{rulecast}:") for k in a.client.keys("*"))
    finally:
        b.close()


def test_open_store_redis(redis_url):
    """open_store opens redis:// (and rediss://) URLs as a RedisStore with the limits."""
    s = open_store(redis_url, max_per_channel=7)
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
